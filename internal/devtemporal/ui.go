package devtemporal

import (
	"strings"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"
)

// newUIServer builds the Temporal Web UI on host:port, talking to the
// frontend at frontendAddr. Its assets are embedded in the binary.
func newUIServer(host string, port int, frontendAddr, namespace string) *uiserver.Server {
	return uiserver.NewServer(uiserveroptions.WithConfigProvider(&uiconfig.Config{
		Host:                uiHost(host),
		Port:                port,
		TemporalGRPCAddress: frontendAddr,
		EnableUI:            true,
		DefaultNamespace:    namespace,
		// Plain http on loopback: the session cookies cannot be Secure.
		CORS: uiconfig.CORS{CookieInsecure: true},
		// No request log on our stdout, and no fetching news from the internet.
		HideLogs:         true,
		DisableNewsFetch: true,
	}))
}

// uiHost brackets an IPv6 host: the UI server joins host and port with a
// plain ":".
func uiHost(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}
