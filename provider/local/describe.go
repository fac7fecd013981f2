package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/gpuflow/gpuflow"
)

// Reasons of failed machines.
const (
	reasonVanished   = "process vanished without recording an exit code"
	reasonNotStarted = "the job was never started (the worker stopped while starting it)"
)

// Describe returns the job's machine: MachineExited with the exit code once
// it is recorded, MachineRunning while the wrapper runs (MachineStopping
// while Terminate stops it), MachineFailed when the process vanished
// without recording an exit code, and MachineGone for an unknown or
// terminated job.
func (p *Provider) Describe(ctx context.Context, machineID string) (*gpuflow.Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !validID(machineID) {
		return p.gone(machineID), nil
	}
	unlock, err := p.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return p.describe(machineID), nil
}

// DescribeMany describes the jobs in ids in one look at the job
// directories, under one shared lock.
func (p *Provider) DescribeMany(ctx context.Context, ids []string) (map[string]gpuflow.Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	unlock, err := p.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := make(map[string]gpuflow.Machine, len(ids))
	for _, id := range ids {
		if !validID(id) {
			out[id] = *p.gone(id)
			continue
		}
		out[id] = *p.describe(id)
	}
	return out, nil
}

func (p *Provider) gone(id string) *gpuflow.Machine {
	return &gpuflow.Machine{ID: id, Provider: Name, State: gpuflow.MachineGone, Region: Region}
}

// describe reads the job's state from its directory. The caller holds the
// lock (shared or exclusive).
func (p *Provider) describe(id string) *gpuflow.Machine {
	dir := p.jobDir(id)
	m := p.gone(id)
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return m
	}
	md, err := readMeta(dir)
	if err == nil {
		m.GPUType = md.GPUType
		m.GPUCount = md.GPUCount
		m.Tags = md.Tags
		m.CreatedAt = md.CreatedAt
	}
	if exists(filepath.Join(dir, terminatedFile)) {
		return m
	}
	if md == nil {
		if errors.Is(err, fs.ErrNotExist) {
			return m // a directory without a job in it
		}
		return p.failed(m, fmt.Sprintf("unreadable job record: %v", err))
	}
	// exit code, then liveness, then the exit code again: a job that ends
	// between the first two looks dead but has recorded its code by then.
	if m, done := p.exited(m, dir); done {
		return m
	}
	rec, err := readPid(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return p.failed(m, reasonNotStarted)
	}
	if err != nil {
		return p.failed(m, fmt.Sprintf("unreadable pid file: %v", err))
	}
	if wrapperAlive(rec.PID, rec.Start) {
		m.State = gpuflow.MachineRunning
		if exists(filepath.Join(dir, terminatingFile)) {
			m.State = gpuflow.MachineStopping
		}
		return m
	}
	if m, done := p.exited(m, dir); done {
		return m
	}
	return p.failed(m, reasonVanished)
}

func (p *Provider) exited(m *gpuflow.Machine, dir string) (*gpuflow.Machine, bool) {
	code, ok, err := readExitCode(dir)
	if err != nil {
		return p.failed(m, fmt.Sprintf("unreadable exit code: %v", err)), true
	}
	if !ok {
		return m, false
	}
	m.State = gpuflow.MachineExited
	m.ExitCode = &code
	return m, true
}

func (p *Provider) failed(m *gpuflow.Machine, reason string) *gpuflow.Machine {
	m.State = gpuflow.MachineFailed
	m.Reason = reason
	return m
}

// List returns the machines of the job directories that are not
// terminated, whatever their state.
func (p *Provider) List(ctx context.Context) ([]gpuflow.Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	unlock, err := p.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, p.transient("read job directory", err)
	}
	out := []gpuflow.Machine{}
	for _, e := range ents {
		if !e.IsDir() || !validID(e.Name()) {
			continue
		}
		m := p.describe(e.Name())
		if m.State == gpuflow.MachineGone {
			continue
		}
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b gpuflow.Machine) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// defaultLogLimit is the read size when ReadLogs gets no positive limit.
const defaultLogLimit = 1 << 20

// ReadLogs returns up to limit bytes of the job's output (stdout and
// stderr of every attempt) from offset; nothing once offset reaches the
// end. An unknown job is a KindNotFound *gpuflow.ProviderError.
func (p *Provider) ReadLogs(ctx context.Context, machineID string, offset int64, limit int) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, p.invalid("log offset must not be negative")
	}
	if limit <= 0 {
		limit = defaultLogLimit
	}
	notFound := &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindNotFound, Message: fmt.Sprintf("no job %q", machineID)}
	if !validID(machineID) {
		return nil, notFound
	}
	dir := p.jobDir(machineID)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, notFound
	}
	f, err := os.Open(filepath.Join(dir, logFile)) // #nosec G304 -- a file in the job directory of a checked id (validID)
	if errors.Is(err, fs.ErrNotExist) {
		return []byte{}, nil
	}
	if err != nil {
		return nil, p.transient("open log", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, p.transient("read log", err)
	}
	if offset >= st.Size() {
		return []byte{}, nil
	}
	buf := make([]byte, min(int64(limit), st.Size()-offset))
	n, err := f.ReadAt(buf, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, p.transient("read log", err)
	}
	return buf[:n], nil
}
