package tencent_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
	cvm "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/cvm/v20170312"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/testutil"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/tencent"
	"github.com/gpuflow/gpuflow/provider/tencent/emulator"
)

// BenchmarkDescribeMany10k is one DescribeMany over 10,000 running
// instances on the emulator through the real SDK: a first sweep ("full":
// 100 DescribeInstances calls) and a watcher's later one ("status": 100
// DescribeInstancesStatus calls, the descriptions cached), with the rate
// limits lifted (the cost of the sweep itself) and at the emulator's
// default rates (how long a sweep waits). At the published 40 calls a
// second a sweep takes about 1.5 s of waiting (40 at once, then 60 more at
// 40/s).
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

	newProvider := func(b *testing.B) *tencent.Provider {
		p, err := tencent.New(tencent.Config{SecretID: testSecretID, SecretKey: testSecretKey, Endpoint: srv.URL,
			Regions: []string{testRegion}, ImageID: "img-gpuflow1", Mode: gpuflow.ModeEmulated})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	ctx := context.Background()
	describe := func(b *testing.B, p *tencent.Provider) {
		got, err := p.DescribeMany(ctx, ids)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != n || got[ids[n-1]].State != gpuflow.MachineRunning {
			b.Fatalf("%d machines, last %+v", len(got), got[ids[n-1]])
		}
	}
	// A watcher's later sweeps ("status": DescribeInstancesStatus, then the
	// cached descriptions) and a first sweep ("full": DescribeInstances).
	actions := []string{"DescribeInstances", "DescribeInstancesStatus"}
	sweep := func(warm bool) func(*testing.B) {
		return testutil.SweepBench(warm, newProvider, describe, em.RateLimiter(), actions...)
	}
	b.Run("full", sweep(false))
	b.Run("status", sweep(true))
	// At the emulator's default rates, after a pause that fills the
	// buckets.
	for _, a := range actions {
		em.RateLimiter().SetRate(a, emulator.DefaultRateLimits[a])
	}
	time.Sleep(time.Second)
	b.Run("full-enforced", sweep(false))
	time.Sleep(time.Second)
	b.Run("status-enforced", sweep(true))
}
