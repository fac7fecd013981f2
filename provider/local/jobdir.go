package local

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Files in a job directory (see the package comment).
const (
	metaFile        = "job.json"
	gpusFile        = "gpus"
	pidFile         = "pid"
	logFile         = "output.log"
	exitCodeFile    = "exit_code"
	terminatingFile = "terminating"
	terminatedFile  = "terminated"
	attemptPrefix   = "attempt-"
)

// controlFiles are the files of one attempt, moved aside into attempt-N/
// when a new attempt starts. output.log stays and is appended to, so log
// offsets keep growing across attempts; files the job wrote stay too.
var controlFiles = []string{metaFile, gpusFile, pidFile, exitCodeFile, exitCodeFile + ".tmp", terminatingFile, terminatedFile}

// meta is job.json: what Provision started.
type meta struct {
	JobID          string            `json:"job_id"`
	IdempotencyKey string            `json:"idempotency_key"`
	Attempt        int               `json:"attempt"`
	GPUType        string            `json:"gpu_type"`
	GPUCount       int               `json:"gpu_count"`
	GPUs           []int             `json:"gpus,omitempty"`
	Image          string            `json:"image,omitempty"`
	Runtime        string            `json:"runtime,omitempty"`   // docker or podman path
	Container      string            `json:"container,omitempty"` // container name
	Tags           map[string]string `json:"tags,omitempty"`
	CreatedAt      time.Time         `json:"created_at"`
}

func readMeta(dir string) (*meta, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile)) // #nosec G304 -- a file in the job directory of a checked id (validID)
	if err != nil {
		return nil, err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", metaFile, err)
	}
	return &m, nil
}

// pidRecord is the pid file: the wrapper's pid (== its process group and
// session id) and its start time from /proc/<pid>/stat (0 when unknown).
type pidRecord struct {
	PID   int
	Start uint64
}

func readPid(dir string) (pidRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, pidFile)) // #nosec G304 -- a file in the job directory of a checked id (validID)
	if err != nil {
		return pidRecord{}, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return pidRecord{}, fmt.Errorf("malformed pid file %q", b)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 1 {
		return pidRecord{}, fmt.Errorf("malformed pid file %q", b)
	}
	start, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return pidRecord{}, fmt.Errorf("malformed pid file %q", b)
	}
	return pidRecord{PID: pid, Start: start}, nil
}

func (r pidRecord) String() string { return fmt.Sprintf("%d %d\n", r.PID, r.Start) }

// readExitCode returns the recorded exit code; ok is false while there is
// none. The file exists, empty, while the job runs; the wrapper writes the
// code as one line (wrappers of earlier versions renamed a complete file
// into place), so a line without its newline is not written yet.
func readExitCode(dir string) (code int, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, exitCodeFile)) // #nosec G304 -- a file in the job directory of a checked id (validID)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		return 0, false, nil
	}
	code, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false, fmt.Errorf("malformed exit code %q", b)
	}
	return code, true, nil
}

func readGPUs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, gpusFile)) // #nosec G304 -- a file in the job directory of a checked id (validID)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		i, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("malformed gpus file %q", b)
		}
		out = append(out, i)
	}
	return out, nil
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// writeAtomic writes data to path through a temporary file and a rename,
// so readers see the old content or the new, never a part.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// usage is what the live jobs in Dir hold.
type usage struct {
	gpus    map[int]string // GPU index -> job id
	cpuJobs int
}

// usage derives the allocations from the job directories: a job holds its
// GPUs (or a CPU slot) until it is terminated or nothing of it runs any
// more. skip names a directory to leave out. The caller holds the lock.
func (p *Provider) usage(skip string) (usage, error) {
	u := usage{gpus: map[int]string{}}
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return u, p.transient("read job directory", err)
	}
	var procs *procView // scanned on first need: /proc is costly to read
	for _, e := range ents {
		id := e.Name()
		if !e.IsDir() || id == skip || !validID(id) {
			continue
		}
		dir := p.jobDir(id)
		if exists(filepath.Join(dir, terminatedFile)) {
			continue
		}
		rec, err := readPid(dir)
		if err != nil {
			continue
		}
		if procs == nil {
			v := scanProcs()
			procs = &v
		}
		if !jobAlive(rec.PID, rec.Start, *procs) {
			continue
		}
		gpus, err := readGPUs(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.log.Warn("unreadable gpus file; assuming a CPU job", "job_id", id, "err", err)
		}
		if len(gpus) == 0 {
			u.cpuJobs++
			continue
		}
		for _, g := range gpus {
			u.gpus[g] = id
		}
	}
	return u, nil
}
