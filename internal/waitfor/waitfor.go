// Package waitfor polls until something holds or the context ends: the
// readiness probes of the servers that the dev stack and the test
// topology start (an HTTP endpoint answering 200, a Temporal namespace
// answering).
package waitfor

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Until calls try every interval until it returns nil, and returns nil
// then. When ctx ends first it returns ctx's error with try's last.
func Until(ctx context.Context, every time.Duration, try func(context.Context) error) error {
	for {
		err := try(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(every):
		}
	}
}

// HTTP200 waits until a GET of url answers 200, trying every interval
// with each try limited to perTry. A url that cannot make a request is an
// error at once.
func HTTP200(ctx context.Context, url string, every, perTry time.Duration) error {
	if _, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil); err != nil {
		return err
	}
	client := &http.Client{Timeout: perTry}
	return Until(ctx, every, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	})
}
