package alibaba_test

import (
	"strings"
	"testing"

	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/gpuflow/gpuflow/provider/alibaba/emulator"
)

// sdkClient is a plain SDK client on the emulator, as an operator's
// script would use it.
func sdkClient(t *testing.T, e *env) *ecs.Client {
	t.Helper()
	_, host, _ := strings.Cut(e.srv.URL, "://")
	c, err := ecs.NewClient(&openapi.Config{
		AccessKeyId:     tea.String(emulator.TestAccessKeyID),
		AccessKeySecret: tea.String(emulator.TestAccessKeySecret),
		RegionId:        tea.String("cn-hangzhou"),
		Protocol:        tea.String("http"),
		Endpoint:        tea.String(host),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createUntagged makes an instance outside gpuflow (no tags) and returns
// its id.
func createUntagged(t *testing.T, e *env) string {
	t.Helper()
	resp, err := sdkClient(t, e).RunInstancesWithOptions(&ecs.RunInstancesRequest{
		RegionId:     tea.String("cn-hangzhou"),
		InstanceType: tea.String("ecs.gn6i-c4g1.xlarge"),
		ImageId:      tea.String("centos_7"),
	}, &dara.RuntimeOptions{})
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	return tea.StringValue(resp.Body.InstanceIdSets.InstanceIdSet[0])
}
