// Package devtemporal runs a Temporal server, and optionally its Web UI, inside
// the calling process. It exists for `gpuflow dev` and for integration tests;
// production talks to a real Temporal cluster and never links this package.
//
// The server keeps its state in SQLite: in memory by default, or in a file
// (Options.DBFile) that survives restarts. One process at a time may use a
// file; a lock next to it makes a second copy fail fast. The schema is created
// for a new file and never migrated: when a Temporal upgrade changes it, Start
// refuses the old file and says how to start fresh.
//
// Or it keeps its state in PostgreSQL (Options.Postgres), as production does:
// two databases, the schema set up and upgraded from Temporal's embedded
// schema files, several history shards. The topology (internal/topology)
// runs it so, as a process of its own (`gpuflow-dev temporal`).
//
// Everything listens on loopback only and nothing is authenticated.
package devtemporal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gofrs/flock"
	uiserver "github.com/temporalio/ui-server/v2/server"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/temporal"

	"github.com/gpuflow/gpuflow/internal/waitfor"
)

// FreePort asks Start to pick any free loopback port (Options.Port and
// Options.UIPort).
const FreePort = -1

// DefaultPort and DefaultUIPort are the ports the Temporal CLI's dev server
// uses; callers that want them must ask for them explicitly.
const (
	DefaultPort   = 7233
	DefaultUIPort = 8233
)

// Options configures Start. The zero value runs an in-memory server on a free
// loopback port, without the Web UI, with the namespace "default".
type Options struct {
	// DBFile is the SQLite file that holds the server's state. Empty keeps
	// everything in memory, lost on Stop. The parent directory is created if
	// needed; "<DBFile>.lock" and "<DBFile>.schema-version" are kept next to it.
	DBFile string
	// Postgres, when set, keeps the server's state in PostgreSQL instead of
	// SQLite (DBFile must then be empty).
	Postgres *Postgres
	// Host is the loopback address every listener binds to (default
	// 127.0.0.1; "localhost" and ::1 are accepted, any other host is refused
	// because nothing here is authenticated).
	Host string
	// Port is the frontend gRPC port clients dial: 0 or FreePort picks a free
	// port, a positive value must be free.
	Port int
	// UIPort is the Web UI's HTTP port: 0 disables the UI, FreePort picks a
	// free port, a positive value (e.g. DefaultUIPort) must be free.
	UIPort int
	// Namespace is created at start if missing (default "default").
	Namespace string
	// SearchAttributes are custom Keyword search attributes the namespace must
	// have (e.g. workflows.SearchAttributeNames). Missing ones are added on
	// every Start, so an existing DB file picks up new attributes.
	SearchAttributes []string
	// Logger receives the server's logs (default: discard). They carry no
	// "component" attribute of their own: add one with Logger.With if needed.
	Logger *slog.Logger
	// LogLevel is the lowest level of server logs passed to Logger
	// (nil: slog.LevelWarn, since the server is chatty at info). Logger's own
	// handler may filter further.
	LogLevel slog.Leveler
	// SuggestContinueAsNewAt, when positive, is the history length (in
	// events) at which the server tells workflows to continue as new
	// (default 4,096). A test knob: the history capture sets it low to run
	// a job through continue-as-new.
	SuggestContinueAsNewAt int
}

// Server is a running embedded Temporal server. Stop it with Stop.
type Server struct {
	logger       *slog.Logger
	level        *stopLeveler // the server's log level
	srv          temporal.Server
	ui           *uiserver.Server
	uiDone       chan struct{}
	lock         *flock.Flock
	frontendAddr string
	uiURL        string
	stopOnce     sync.Once
}

// Start starts the server and, if asked, the Web UI, and returns once both
// accept requests and the namespace has its search attributes. On error
// nothing is left running and the DB file lock is released.
//
// ctx bounds the start-up checks (search attributes, UI readiness), not the
// server's lifetime: call Stop to end it.
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	s := &Server{logger: opts.Logger}

	// The lock comes first: a second copy must not touch the ports or the file.
	if opts.DBFile != "" {
		if s.lock, err = lockDBFile(opts.DBFile); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				_ = s.lock.Close()
			}
		}()
	}

	ports, err := resolvePorts(opts.Host, opts.Port, opts.UIPort)
	if err != nil {
		return nil, err
	}
	s.frontendAddr = net.JoinHostPort(opts.Host, strconv.Itoa(ports.frontend))

	var persist config.Persistence
	var nsConf *config.SQL // where the namespace is created
	if opts.Postgres != nil {
		exec, vis, err := preparePostgres(ctx, opts.Postgres, opts.Logger)
		if err != nil {
			return nil, err
		}
		persist, nsConf = postgresPersistence(exec, vis, opts.Postgres.HistoryShards), exec
	} else {
		sqlConf, err := prepareDB(opts.DBFile)
		if err != nil {
			return nil, err
		}
		persist, nsConf = sqlitePersistence(sqlConf), sqlConf
	}
	if err := createNamespace(nsConf, opts.Namespace, opts.SearchAttributes); err != nil {
		return nil, err
	}

	s.level = &stopLeveler{base: opts.LogLevel}
	logger := slog.New(&levelHandler{h: opts.Logger.Handler(), min: s.level})
	var dc *startupConfig
	s.srv, dc, err = newTemporalServer(opts.Host, ports, persist, logger, opts.SuggestContinueAsNewAt)
	if err != nil {
		return nil, err
	}
	if err := s.srv.Start(); err != nil {
		return nil, fmt.Errorf("start temporal server: %w", err)
	}
	defer func() {
		if err != nil {
			s.stopTemporal()
		}
	}()

	added, err := ensureSearchAttributes(ctx, s.frontendAddr, opts.Namespace, opts.SearchAttributes, logger)
	if err != nil {
		return nil, err
	}
	dc.settled(added)

	if ports.ui != 0 {
		uiAddr := net.JoinHostPort(opts.Host, strconv.Itoa(ports.ui))
		s.uiURL = "http://" + uiAddr
		ui, done := newUIServer(opts.Host, ports.ui, s.frontendAddr, opts.Namespace), make(chan struct{})
		s.ui, s.uiDone = ui, done
		go func() {
			defer close(done)
			// Start only returns once Stop closes it; a listen error exits the
			// process (hence the port check above).
			_ = ui.Start()
		}()
		uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := waitfor.HTTP200(uctx, s.uiURL+"/healthz", 25*time.Millisecond, time.Second)
		cancel()
		if err != nil {
			s.stopUI()
			return nil, fmt.Errorf("temporal web ui on %s: %w", uiAddr, err)
		}
	}

	opts.Logger.Debug("temporal dev server started",
		"frontend", s.frontendAddr, "ui", s.uiURL, "db_file", opts.DBFile, "namespace", opts.Namespace)
	return s, nil
}

// FrontendAddr is the host:port SDK clients dial.
func (s *Server) FrontendAddr() string { return s.frontendAddr }

// UIURL is the Web UI's base URL, e.g. "http://127.0.0.1:8233", or "" when
// the UI is disabled.
func (s *Server) UIURL() string { return s.uiURL }

// Stop stops the UI, then the server, and releases the DB file lock. It
// usually takes about a second and is safe to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.stopUI()
		s.stopTemporal()
		if s.lock != nil {
			if err := s.lock.Close(); err != nil {
				s.logger.Warn("release temporal db lock", "err", err)
			}
		}
	})
}

func (s *Server) stopUI() {
	if s.ui == nil {
		return
	}
	s.ui.Stop()
	select {
	case <-s.uiDone:
	case <-time.After(5 * time.Second):
		s.logger.Warn("temporal web ui did not stop in time")
	}
	s.ui = nil
}

func (s *Server) stopTemporal() {
	s.level.mute()
	if err := s.srv.Stop(); err != nil {
		s.logger.Warn("stop temporal server", "err", err)
	}
}

// normalize applies defaults and rejects options Start cannot honour.
func (o *Options) normalize() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LogLevel == nil {
		o.LogLevel = slog.LevelWarn
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	switch o.Host {
	case "":
		o.Host = "127.0.0.1"
	case "localhost":
		o.Host = "127.0.0.1"
	default:
		ip := net.ParseIP(o.Host)
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("temporal dev server host %q: must be a loopback IP address (the dev server has no authentication)", o.Host)
		}
		o.Host = ip.String()
	}
	if o.Port < FreePort || o.Port > 65535 {
		return fmt.Errorf("temporal dev server port %d: out of range", o.Port)
	}
	if o.UIPort < FreePort || o.UIPort > 65535 {
		return fmt.Errorf("temporal web ui port %d: out of range", o.UIPort)
	}
	if o.Postgres != nil {
		if o.DBFile != "" {
			return errors.New("temporal dev server: DBFile and Postgres are exclusive")
		}
		pg := *o.Postgres // normalized on a copy: the caller's stays as given
		if err := pg.normalize(); err != nil {
			return err
		}
		o.Postgres = &pg
	}
	seen := make(map[string]bool, len(o.SearchAttributes))
	attrs := make([]string, 0, len(o.SearchAttributes))
	for _, name := range o.SearchAttributes {
		if name == "" {
			return errors.New("temporal dev server: empty search attribute name")
		}
		if !seen[name] {
			seen[name] = true
			attrs = append(attrs, name)
		}
	}
	o.SearchAttributes = attrs
	return nil
}

// lockDBFile takes the exclusive lock "<dbFile>.lock", creating the directory
// if needed.
func lockDBFile(dbFile string) (*flock.Flock, error) {
	if err := ensureDir(dbFile); err != nil {
		return nil, err
	}
	lockPath := dbFile + ".lock"
	lock := flock.New(lockPath)
	ok, err := lock.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	if !ok {
		return nil, fmt.Errorf("another gpuflow dev server is using %s (lock %s held)", dbFile, lockPath)
	}
	return lock, nil
}
