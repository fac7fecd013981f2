package api

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"

	"github.com/gpuflow/gpuflow"
)

// fakeStore is an in-memory gpuflow.JobStore.
type fakeStore struct {
	mu         sync.Mutex
	jobs       map[string]*gpuflow.Job
	logs       map[string][]byte
	createErr  error
	getErr     error
	creates    int
	lastFilter gpuflow.JobFilter
}

var _ gpuflow.JobStore = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{jobs: map[string]*gpuflow.Job{}, logs: map[string][]byte{}}
}

func cloneJob(j *gpuflow.Job) *gpuflow.Job {
	c := *j
	c.Attempts = slices.Clone(j.Attempts)
	return &c
}

func (s *fakeStore) CreateJob(_ context.Context, j *gpuflow.Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creates++
	if s.createErr != nil {
		return s.createErr
	}
	if _, ok := s.jobs[j.ID]; !ok {
		s.jobs[j.ID] = cloneJob(j)
	}
	return nil
}

func (s *fakeStore) put(j *gpuflow.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[j.ID] = cloneJob(j)
}

func (s *fakeStore) setStatus(id string, st gpuflow.JobStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[id].Status = st
}

func (s *fakeStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jobs)
}

func (s *fakeStore) Job(_ context.Context, id string) (*gpuflow.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.getErr != nil {
		return nil, s.getErr
	}
	j, ok := s.jobs[id]
	if !ok {
		return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "job %s not found", id)
	}
	return cloneJob(j), nil
}

func (s *fakeStore) Jobs(_ context.Context, f gpuflow.JobFilter) ([]*gpuflow.Job, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastFilter = f
	var all []*gpuflow.Job
	for _, j := range s.jobs {
		if (f.OwnerID == "" || j.OwnerID == f.OwnerID) && (f.Status == "" || j.Status == f.Status) &&
			(f.Provider == "" || j.Provider == f.Provider) {
			all = append(all, j)
		}
	}
	slices.SortFunc(all, func(a, b *gpuflow.Job) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	start := 0
	if f.Cursor != "" {
		n, err := strconv.Atoi(f.Cursor)
		if err != nil || n < 0 {
			return nil, "", gpuflow.Errorf(gpuflow.EINVALID, "bad cursor")
		}
		start = min(n, len(all))
	}
	end := min(start+f.Limit, len(all))
	out := make([]*gpuflow.Job, 0, end-start)
	for _, j := range all[start:end] {
		out = append(out, cloneJob(j))
	}
	next := ""
	if end < len(all) {
		next = strconv.Itoa(end)
	}
	return out, next, nil
}

func (s *fakeStore) ApplyUpdate(context.Context, gpuflow.JobUpdate) (*gpuflow.Event, error) {
	return nil, errors.New("not implemented")
}

func (s *fakeStore) Events(context.Context, string) ([]gpuflow.Event, error) {
	return nil, errors.New("not implemented")
}

func (s *fakeStore) AppendLog(_ context.Context, jobID string, offset int64, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if offset == int64(len(s.logs[jobID])) {
		s.logs[jobID] = append(s.logs[jobID], data...)
	}
	return nil
}

func (s *fakeStore) Logs(_ context.Context, jobID string, offset int64, limit int) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[jobID]
	if offset >= int64(len(l)) {
		return nil, nil
	}
	end := min(int(offset)+limit, len(l))
	return slices.Clone(l[offset:end]), nil
}

// fakeProvider is a provider with fixed offers and health.
type fakeProvider struct {
	info      gpuflow.ProviderInfo
	offers    []gpuflow.Offer
	offersErr error
	healthErr error
}

var _ gpuflow.Provider = (*fakeProvider)(nil)

func (p *fakeProvider) Info() gpuflow.ProviderInfo { return p.info }

func (p *fakeProvider) Offers(context.Context) ([]gpuflow.Offer, error) {
	if p.offersErr != nil {
		return nil, p.offersErr
	}
	return slices.Clone(p.offers), nil
}

func (p *fakeProvider) Provision(context.Context, gpuflow.ProvisionRequest) (*gpuflow.Machine, error) {
	return nil, errors.New("not implemented")
}

func (p *fakeProvider) Describe(context.Context, string) (*gpuflow.Machine, error) {
	return nil, errors.New("not implemented")
}

func (p *fakeProvider) Terminate(context.Context, string) error { return errors.New("not implemented") }

func (p *fakeProvider) List(context.Context) ([]gpuflow.Machine, error) { return nil, nil }

func (p *fakeProvider) Health(context.Context) error { return p.healthErr }

// checkingProvider also rejects specs outright.
type checkingProvider struct {
	*fakeProvider
	checkErr error
}

func (p *checkingProvider) Check(gpuflow.JobSpec) error { return p.checkErr }
