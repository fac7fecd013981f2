package tencent_test

import (
	"context"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
	cvm "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/cvm/v20170312"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/tencent"
	"github.com/gpuflow/gpuflow/provider/tencent/emulator"
)

// BenchmarkDescribeMany10k is one DescribeMany over 10,000 running
// instances on the emulator (100 DescribeInstances calls through the real
// SDK), with the rate limit lifted (the cost of the sweep itself) and at the
// emulator's default rate (how long a sweep waits). At the
// published 40 calls a second the same sweep takes about 1.5 s of waiting
// (40 at once, then 60 more at 40/s).
func BenchmarkDescribeMany10k(b *testing.B) {
	const n = 10_000
	em := emulator.New(emulator.Options{
		Credentials: map[string]string{testSecretID: testSecretKey},
		Timing:      emulate.Timing{Pending: time.Millisecond, Starting: time.Millisecond, Run: time.Hour},
		RateLimits:  map[string]emulate.Rate{},
	})
	defer em.Close()
	srv := httptest.NewServer(em)
	defer srv.Close()

	// 10,000 instances, 100 a RunInstances call.
	cpf := profile.NewClientProfile()
	cpf.HttpProfile.Scheme, cpf.HttpProfile.Endpoint = "HTTP", srv.Listener.Addr().String()
	c, err := cvm.NewClient(common.NewCredential(testSecretID, testSecretKey), testRegion, cpf)
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for len(ids) < n {
		req := cvm.NewRunInstancesRequest()
		req.Placement = &cvm.Placement{Zone: common.StringPtr("ap-guangzhou-3")}
		req.InstanceType = common.StringPtr("GN7.2XLARGE32")
		req.ImageId = common.StringPtr("img-gpuflow1")
		req.InstanceCount = common.Int64Ptr(100)
		req.TagSpecification = []*cvm.TagSpecification{{ResourceType: common.StringPtr("instance"),
			Tags: []*cvm.Tag{{Key: common.StringPtr(gpuflow.TagManaged), Value: common.StringPtr("true")}}}}
		resp, err := c.RunInstances(req)
		if err != nil {
			b.Fatal(err)
		}
		for _, id := range resp.Response.InstanceIdSet {
			ids = append(ids, *id)
		}
	}
	time.Sleep(10 * time.Millisecond) // past PENDING and STARTING

	p, err := tencent.New(tencent.Config{SecretID: testSecretID, SecretKey: testSecretKey, Endpoint: srv.URL,
		Regions: []string{testRegion}, ImageID: "img-gpuflow1", Mode: gpuflow.ModeEmulated})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sweep := func(b *testing.B) {
		calls := em.RateLimiter().Counts("DescribeInstances")
		sweeps := 0
		cpu0 := cpuTime()
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
		after := em.RateLimiter().Counts("DescribeInstances")
		b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(sweeps), "cpu-ms/op")
		b.ReportMetric(float64(after.Allowed-calls.Allowed)/float64(sweeps), "calls/op")
		b.ReportMetric(float64(after.Throttled-calls.Throttled)/float64(sweeps), "throttled/op")
	}
	b.Run("unlimited", sweep)
	// At the emulator's default rate, after a pause that fills the bucket.
	em.RateLimiter().SetRate("DescribeInstances", emulator.DefaultRateLimits["DescribeInstances"])
	time.Sleep(time.Second)
	b.Run("enforced", sweep)
}

// cpuTime is the CPU time this process (client and emulator alike) has
// used: a figure the other load on a shared machine does not inflate, as
// it does ns/op.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
