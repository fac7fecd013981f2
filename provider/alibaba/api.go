package alibaba

import (
	"context"
	"sync"

	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/dara"
)

// regionAPI calls ECS in one region. The SDK's client is not safe for
// concurrent calls (each call resets its debug headers), so every call
// borrows a client of its own from a small free list.
type regionAPI struct {
	newClient func() (*ecs.Client, error)

	mu   sync.Mutex
	free []*ecs.Client
}

// maxIdleClients bounds the free list.
const maxIdleClients = 8

func (a *regionAPI) get() (*ecs.Client, error) {
	a.mu.Lock()
	if n := len(a.free); n > 0 {
		c := a.free[n-1]
		a.free = a.free[:n-1]
		a.mu.Unlock()
		return c, nil
	}
	a.mu.Unlock()
	return a.newClient()
}

func (a *regionAPI) put(c *ecs.Client) {
	a.mu.Lock()
	if len(a.free) < maxIdleClients {
		a.free = append(a.free, c)
	}
	a.mu.Unlock()
}

// call runs one SDK call on a borrowed client.
func call[Req, Resp any](ctx context.Context, a *regionAPI, req Req,
	fn func(*ecs.Client, context.Context, Req, *dara.RuntimeOptions) (Resp, error)) (Resp, error) {
	c, err := a.get()
	if err != nil {
		var zero Resp
		return zero, err
	}
	defer a.put(c)
	return fn(c, ctx, req, &dara.RuntimeOptions{})
}

func (a *regionAPI) RunInstances(ctx context.Context, req *ecs.RunInstancesRequest) (*ecs.RunInstancesResponse, error) {
	return call(ctx, a, req, (*ecs.Client).RunInstancesWithContext)
}

func (a *regionAPI) DescribeInstances(ctx context.Context, req *ecs.DescribeInstancesRequest) (*ecs.DescribeInstancesResponse, error) {
	return call(ctx, a, req, (*ecs.Client).DescribeInstancesWithContext)
}

func (a *regionAPI) DescribeInstanceStatus(ctx context.Context, req *ecs.DescribeInstanceStatusRequest) (*ecs.DescribeInstanceStatusResponse, error) {
	return call(ctx, a, req, (*ecs.Client).DescribeInstanceStatusWithContext)
}

func (a *regionAPI) DeleteInstance(ctx context.Context, req *ecs.DeleteInstanceRequest) (*ecs.DeleteInstanceResponse, error) {
	return call(ctx, a, req, (*ecs.Client).DeleteInstanceWithContext)
}

func (a *regionAPI) DescribeAvailableResource(ctx context.Context, req *ecs.DescribeAvailableResourceRequest) (*ecs.DescribeAvailableResourceResponse, error) {
	return call(ctx, a, req, (*ecs.Client).DescribeAvailableResourceWithContext)
}

func (a *regionAPI) DescribePrice(ctx context.Context, req *ecs.DescribePriceRequest) (*ecs.DescribePriceResponse, error) {
	return call(ctx, a, req, (*ecs.Client).DescribePriceWithContext)
}
