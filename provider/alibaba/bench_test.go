package alibaba_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/testutil"
	"github.com/gpuflow/gpuflow/provider/alibaba"
	"github.com/gpuflow/gpuflow/provider/alibaba/emulator"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// BenchmarkDescribeMany10k is one DescribeMany over 10,000 running
// instances on the emulator through the real SDK: a first sweep ("full":
// 100 DescribeInstances calls) and a watcher's later one ("status": 200
// DescribeInstanceStatus calls of 50, the descriptions cached), with the
// rate limits lifted (the cost of the sweep itself) and at the emulator's
// default rates (how long a sweep waits). At the enforced 10 calls a
// second a full sweep takes about 9 s of waiting (10 at once, then 90 more
// at 10/s), a status sweep about 19 s.
func BenchmarkDescribeMany10k(b *testing.B) {
	const n = 10_000
	em := emulator.New(emulator.Options{
		Timing:     emulate.Timing{Pending: time.Millisecond, Starting: time.Millisecond, Run: time.Hour},
		RateLimits: map[string]emulate.Rate{},
	})
	defer em.Close()
	srv := httptest.NewServer(em)
	defer srv.Close()

	c, err := ecs.NewClient(&openapi.Config{
		AccessKeyId: tea.String(emulator.TestAccessKeyID), AccessKeySecret: tea.String(emulator.TestAccessKeySecret),
		RegionId: tea.String("cn-hangzhou"), Protocol: tea.String("http"),
		Endpoint: tea.String(strings.TrimPrefix(srv.URL, "http://")),
	})
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for len(ids) < n {
		resp, err := c.RunInstances(&ecs.RunInstancesRequest{
			RegionId: tea.String("cn-hangzhou"), ZoneId: tea.String("cn-hangzhou-i"),
			InstanceType: tea.String("ecs.gn7i-c8g1.2xlarge"), ImageId: tea.String("ubuntu_22_04_x64_20G_alibase_20240101.vhd"),
			Amount: tea.Int32(100),
			Tag:    []*ecs.RunInstancesRequestTag{{Key: tea.String(gpuflow.TagManaged), Value: tea.String("true")}},
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, id := range resp.Body.InstanceIdSets.InstanceIdSet {
			ids = append(ids, "cn-hangzhou:"+tea.StringValue(id))
		}
	}
	time.Sleep(10 * time.Millisecond) // past Pending and Starting

	newProvider := func(b *testing.B) *alibaba.Provider {
		p, err := alibaba.New(alibaba.Config{AccessKeyID: emulator.TestAccessKeyID, AccessKeySecret: emulator.TestAccessKeySecret,
			Endpoint: srv.URL, Regions: []string{"cn-hangzhou"}, Mode: gpuflow.ModeEmulated})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	ctx := context.Background()
	describe := func(b *testing.B, p *alibaba.Provider) {
		got, err := p.DescribeMany(ctx, ids)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != n || got[ids[n-1]].State != gpuflow.MachineRunning {
			b.Fatalf("%d machines, last %+v", len(got), got[ids[n-1]])
		}
	}
	// A watcher's later sweeps ("status": DescribeInstanceStatus, then the
	// cached descriptions) and a first sweep ("full": DescribeInstances).
	actions := []string{"DescribeInstances", "DescribeInstanceStatus"}
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
