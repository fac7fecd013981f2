package devtemporal

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/membership/static"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/temporal"
)

// sqliteStore names the one data store that holds both the execution and the
// visibility tables.
const sqliteStore = "sqlite-default"

// shardPollRPS is how often a history shard may read each of its task
// queues from the database (the server's default is 20): a new task
// waits at most 5 ms for the read that dispatches it.
const shardPollRPS = 200

// newTemporalServer builds (but does not start) a single-process Temporal
// server with all four services on host, persisting as persist says. A positive
// suggestCANAt lowers the history length at which the server suggests
// continue-as-new.
func newTemporalServer(host string, p ports, persist config.Persistence, logger *slog.Logger, suggestCANAt int) (temporal.Server, *startupConfig, error) {
	conf := serverConfig(host, p, persist)
	tlog := newServerLogger(logger)

	authorizer, err := authorization.GetAuthorizerFromConfig(&conf.Global.Authorization)
	if err != nil {
		return nil, nil, fmt.Errorf("temporal authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&conf.Global.Authorization, tlog)
	if err != nil {
		return nil, nil, fmt.Errorf("temporal claim mapper: %w", err)
	}

	fixed := dynamicconfig.StaticClient{
		// No phoning home: the dev server runs offline.
		dynamicconfig.EnableServerVersionCheck.Key(): false,
		// The Web UI lists workflows often; the default per-namespace
		// visibility rate limit is tight for one local user clicking around.
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		// One partition per task queue: with a few pollers on one host,
		// several partitions make a task miss the waiting poller, go to the
		// database and be forwarded (tens of ms per hop).
		dynamicconfig.MatchingNumTaskqueueReadPartitions.Key():  1,
		dynamicconfig.MatchingNumTaskqueueWritePartitions.Key(): 1,
		// Each history shard reads its task queues from the database at
		// most 20 times a second by default, sized for clusters of
		// hundreds of shards. This server has one to a few, so a task
		// written within 50 ms of the last read waited for the next one:
		// every dispatch of a job started while the previous job's
		// closing tasks were being read took about 40 ms more (submit →
		// succeeded of `true` back to back 400 ms, against 136 ms after a
		// pause).
		dynamicconfig.TransferProcessorMaxPollRPS.Key():   shardPollRPS,
		dynamicconfig.TimerProcessorMaxPollRPS.Key():      shardPollRPS,
		dynamicconfig.VisibilityProcessorMaxPollRPS.Key(): shardPollRPS,
		dynamicconfig.OutboundProcessorMaxPollRPS.Key():   shardPollRPS,
	}
	if suggestCANAt > 0 {
		fixed[dynamicconfig.HistoryCountSuggestContinueAsNew.Key()] = suggestCANAt
	}
	dc := &startupConfig{StaticClient: fixed}
	dc.forceSearchAttributes.Store(true)

	addr := func(port int) static.Hosts { return static.SingleLocalHost(net.JoinHostPort(host, strconv.Itoa(port))) }
	srv, err := temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		// Static membership: no gossip ring, no membership ports.
		temporal.WithStaticHosts(map[primitives.ServiceName]static.Hosts{
			primitives.FrontendService: addr(p.frontend),
			primitives.HistoryService:  addr(p.history),
			primitives.MatchingService: addr(p.matching),
			primitives.WorkerService:   addr(p.worker),
		}),
		temporal.WithLogger(tlog),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dc),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("build temporal server: %w", err)
	}
	return srv, dc, nil
}

// sqlitePersistence keeps everything in one SQLite database with one
// history shard (SQLite has a single writer).
func sqlitePersistence(sqlConf *config.SQL) config.Persistence {
	return config.Persistence{
		DefaultStore:     sqliteStore,
		VisibilityStore:  sqliteStore,
		NumHistoryShards: 1,
		DataStores:       map[string]config.DataStore{sqliteStore: {SQL: sqlConf}},
	}
}

// Names of the two PostgreSQL data stores.
const (
	postgresStore           = "postgres-default"
	postgresVisibilityStore = "postgres-visibility"
)

// postgresPersistence keeps executions and visibility in their two
// PostgreSQL databases, with shards history shards.
func postgresPersistence(exec, vis *config.SQL, shards int) config.Persistence {
	return config.Persistence{
		DefaultStore:     postgresStore,
		VisibilityStore:  postgresVisibilityStore,
		NumHistoryShards: int32(shards), // #nosec G115 -- at most a few dozen, checked positive
		DataStores: map[string]config.DataStore{
			postgresStore:           {SQL: exec},
			postgresVisibilityStore: {SQL: vis},
		},
	}
}

// serverConfig is the static server configuration: one cluster, the given
// persistence, no archival, no metrics, no pprof.
func serverConfig(host string, p ports, persist config.Persistence) *config.Config {
	hostPort := func(port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
	service := func(grpcPort, httpPort int) config.Service {
		return config.Service{RPC: config.RPC{GRPCPort: grpcPort, HTTPPort: httpPort, BindOnIP: host}}
	}

	var conf config.Config
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = host
	conf.Persistence = persist
	conf.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             hostPort(p.frontend),
				HTTPAddress:            hostPort(p.frontendHTTP),
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{
		string(primitives.FrontendService): service(p.frontend, p.frontendHTTP),
		string(primitives.HistoryService):  service(p.history, 0),
		string(primitives.MatchingService): service(p.matching, 0),
		string(primitives.WorkerService):   service(p.worker, 0),
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	// The server's internal system workers dial the frontend through this.
	conf.PublicClient.HostPort = hostPort(p.frontend)
	return &conf
}

// startupConfig is the server's dynamic configuration: static, except that
// search attributes are read from the database on every use while the
// start-up may still add some (ensureSearchAttributes), so that they work
// at once. Afterwards the server's own cache (60 s) holds: a refresh per
// read is a database read for every row of every visibility listing,
// which at 10,000 running jobs made the reconciler's listings a third of
// the server's CPU.
type startupConfig struct {
	dynamicconfig.StaticClient
	forceSearchAttributes atomic.Bool
}

// GetValue implements dynamicconfig.Client.
func (c *startupConfig) GetValue(key dynamicconfig.Key) []dynamicconfig.ConstrainedValue {
	if key == dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key() {
		return []dynamicconfig.ConstrainedValue{{Value: c.forceSearchAttributes.Load()}}
	}
	return c.StaticClient.GetValue(key)
}

// searchAttributeCacheTTL is how long the server's services may keep
// search attributes read before an addition (the server's
// cacheRefreshInterval, and a margin).
const searchAttributeCacheTTL = 65 * time.Second

// settled ends the forced refreshes: at once when the start-up added no
// attribute, else once every service's cache read before the addition has
// expired.
func (c *startupConfig) settled(added bool) {
	if !added {
		c.forceSearchAttributes.Store(false)
		return
	}
	time.AfterFunc(searchAttributeCacheTTL, func() { c.forceSearchAttributes.Store(false) })
}
