//go:build dev

package main

import (
	"context"

	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/emuproc"
)

// The emulators command serves the cloud emulators as a process of their
// own (internal/emuproc), for the production topology and its chaos tests.
func init() {
	var stateDir string
	addrs := map[string]*string{app.CloudRunPod: new(string), app.CloudTencent: new(string), app.CloudAlibaba: new(string)}
	cmd := serverCmd("emulators",
		"serve the cloud emulators: --state DIR --runpod ADDR --tencent ADDR --alibaba ADDR",
		func(ctx context.Context, cfg app.Config, _ []string) error {
			c := emuproc.Config{StateDir: stateDir, Addrs: map[string]string{}}
			for name, a := range addrs {
				if *a != "" {
					c.Addrs[name] = *a
				}
			}
			return emuproc.Run(ctx, c, cfg.NewLogger())
		})
	cmd.Flags().StringVar(&stateDir, "state", "", "directory where the emulators keep their state across restarts (none: in memory only)")
	cmd.Flags().StringVar(addrs[app.CloudRunPod], "runpod", "", "serve the RunPod emulator on this address (host:port)")
	cmd.Flags().StringVar(addrs[app.CloudTencent], "tencent", "", "serve the Tencent Cloud emulator on this address (host:port)")
	cmd.Flags().StringVar(addrs[app.CloudAlibaba], "alibaba", "", "serve the Alibaba Cloud emulator on this address (host:port)")
	extraCommands = append(extraCommands, cmd)
}
