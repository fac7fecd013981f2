package gpuflow

import (
	"context"
	"errors"
	"testing"
	"time"
)

type stubProvider struct {
	name   string
	offers []Offer
	err    error
	panics bool
	check  error
}

func (p stubProvider) Info() ProviderInfo { return ProviderInfo{Name: p.name} }
func (p stubProvider) Offers(context.Context) ([]Offer, error) {
	if p.panics {
		panic("boom")
	}
	return p.offers, p.err
}
func (stubProvider) Provision(context.Context, ProvisionRequest) (*Machine, error) { return nil, nil }
func (stubProvider) Describe(context.Context, string) (*Machine, error)            { return nil, nil }
func (stubProvider) Terminate(context.Context, string) error                       { return nil }
func (stubProvider) List(context.Context) ([]Machine, error)                       { return nil, nil }
func (stubProvider) Health(context.Context) error                                  { return nil }

type checkedProvider struct{ stubProvider }

func (p checkedProvider) Check(JobSpec) error { return p.check }

func TestOffersFor(t *testing.T) {
	t.Parallel()
	ps := Providers{
		stubProvider{name: "a", offers: []Offer{{GPUType: "T4", GPUCount: 1}}},
		stubProvider{name: "b", err: errors.New("HTTP 503")},
		stubProvider{name: "c", panics: true},
		stubProvider{name: "d"},
		checkedProvider{stubProvider{name: "e", offers: []Offer{{Provider: "e"}}, check: errors.New("no docker")}},
		stubProvider{name: "f", offers: []Offer{{Provider: "f"}}},
	}
	spec := JobSpec{Providers: []string{"a", "b", "c", "d", "e"}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	offers, refused := ps.OffersFor(ctx, spec)
	if len(offers) != 1 || offers[0].Provider != "a" {
		t.Fatalf("offers %+v: want a's only, named", offers)
	}
	for name, want := range map[string]string{
		"b": "offers unavailable: HTTP 503", "c": "offers unavailable: provider c panicked listing offers: boom",
		"d": "no offers", "e": "no docker", "f": "provider not allowed by the job",
	} {
		if refused[name] != want {
			t.Errorf("refused[%s] = %q, want %q", name, refused[name], want)
		}
	}
	if _, ok := refused["a"]; ok {
		t.Error("a refused")
	}
}

func TestOfferGPUsRented(t *testing.T) {
	for _, tc := range []struct {
		offer Offer
		asked int
		want  int
	}{
		{Offer{GPUCount: 8}, 1, 8},                  // an instance type: rented whole
		{Offer{GPUCount: 1}, 1, 1},                  // the exact size
		{Offer{GPUCount: 8, Divisible: true}, 2, 2}, // a RunPod pod takes what it asks
		{Offer{GPUCount: 4, PerGPU: true}, 3, 3},    // the local host's pooled GPUs
		{Offer{GPUCount: 0}, 0, 0},                  // CPU-only
		{Offer{GPUCount: 8}, 0, 0},                  // a CPU-only job
	} {
		if got := tc.offer.GPUsRented(tc.asked); got != tc.want {
			t.Errorf("%+v asked %d: GPUsRented %d, want %d", tc.offer, tc.asked, got, tc.want)
		}
		if by := tc.offer.Divisible || tc.offer.PerGPU; tc.offer.ByTheGPU() != by {
			t.Errorf("%+v: ByTheGPU %v, want %v", tc.offer, !by, by)
		}
	}
}
