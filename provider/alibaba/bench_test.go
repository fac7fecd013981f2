package alibaba_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/alibaba"
	"github.com/gpuflow/gpuflow/provider/alibaba/emulator"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// BenchmarkDescribeMany10k is one DescribeMany over 10,000 running
// instances on the emulator (100 DescribeInstances calls through the real
// SDK), with the rate limit lifted (the cost of the sweep itself) and at the
// emulator's default rate (how long a sweep waits). At the
// enforced 10 calls a second the same sweep takes about 9 s of waiting (10
// at once, then 90 more at 10/s).
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

	p, err := alibaba.New(alibaba.Config{AccessKeyID: emulator.TestAccessKeyID, AccessKeySecret: emulator.TestAccessKeySecret,
		Endpoint: srv.URL, Regions: []string{"cn-hangzhou"}, Mode: gpuflow.ModeEmulated})
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
