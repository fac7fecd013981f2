package runpod_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/testutil"
	"github.com/gpuflow/gpuflow/provider/agentscript"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/runpod"
	"github.com/gpuflow/gpuflow/provider/runpod/emulator"
)

// BenchmarkDescribeMany10k is one DescribeMany over 10,000 running pods
// on the emulator: one listing of the account's pods (GET /v2/pods), with
// the rate limit lifted. RunPod lists without paging, so a sweep is one
// call whatever the number of pods; what grows is the answer (each pod's
// env holds the runner script, as gpuflow's pods do).
func BenchmarkDescribeMany10k(b *testing.B) {
	const n = 10_000
	em := emulator.New(emulator.Options{
		APIKey:     testKey,
		Timing:     emulate.Timing{Pending: time.Millisecond, Starting: time.Millisecond, Run: time.Hour},
		RateLimits: map[string]emulate.Rate{},
		// The benchmark reads its own answers; keep few.
		MaxRecorded: 10,
	})
	defer em.Close()
	srv := httptest.NewServer(em)
	defer srv.Close()

	ids := make([]string, 0, n)
	for i := range n {
		body, _ := json.Marshal(map[string]any{
			"name": fmt.Sprintf("%sbench-%d", runpod.NamePrefix, i), "image": "runpod/base:0.6.2",
			"gpu": map[string]any{"id": "NVIDIA GeForce RTX 4090", "count": 1},
			// As gpuflow's pods carry it: the runner script, about 6 KB.
			"env": map[string]string{emulate.EnvRunSeconds: "3600", agentscript.EnvRunner: agentscript.Runner()},
		})
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v2/pods", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var pd struct{ ID string }
		err = json.NewDecoder(resp.Body).Decode(&pd)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated {
			b.Fatalf("create: %d %v", resp.StatusCode, err)
		}
		ids = append(ids, pd.ID)
	}
	time.Sleep(10 * time.Millisecond) // past PROVISIONING and STARTING

	p, err := runpod.New(runpod.Config{APIKey: testKey, BaseURL: srv.URL, Mode: gpuflow.ModeEmulated, Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sweeps := 0
	cpu0 := testutil.CPUTime()
	b.ResetTimer()
	for b.Loop() {
		got, err := p.DescribeMany(ctx, ids)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != n || got[ids[n-1]].State != gpuflow.MachineRunning {
			b.Fatalf("%d machines, last %+v", len(got), got[ids[n-1]])
		}
		sweeps++
	}
	b.StopTimer()
	b.ReportMetric(float64((testutil.CPUTime()-cpu0).Milliseconds())/float64(sweeps), "cpu-ms/op")
	b.ReportMetric(float64(em.RateLimiter().Counts(emulator.ClassRead).Allowed)/float64(sweeps), "calls/op")
	for _, id := range ids {
		req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/v2/pods/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
}
