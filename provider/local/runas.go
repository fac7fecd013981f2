package local

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// workDirName is the job's working directory inside its job directory
// when jobs run as another user: the only part that user may write.
const workDirName = "work"

// runAs is the unprivileged account local jobs run as (Config.RunAs).
type runAs struct {
	name     string
	uid, gid uint32
	groups   []uint32
	home     string // "" when it has none to speak of
}

// lookupRunAs finds the account name (a user name or a numeric uid).
func lookupRunAs(name string) (*runAs, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var uerr error
		if u, uerr = user.LookupId(name); uerr != nil {
			return nil, fmt.Errorf("no user %q on this host: %w", name, err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	ra := &runAs{name: u.Username, uid: uint32(uid), gid: uint32(gid)}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil && !slices.Contains(ra.groups, uint32(n)) {
				ra.groups = append(ra.groups, uint32(n))
			}
		}
	}
	if st, err := os.Stat(u.HomeDir); err == nil && st.IsDir() {
		ra.home = u.HomeDir
	}
	return ra, nil
}

// setupRunAs checks that jobs can run as cfg.RunAs: the worker must be
// root (only root can start a process as another user), the account must
// not be root, and it must be able to reach Dir's job directories. It
// returns nil when RunAs names the worker's own user (nothing to change).
func setupRunAs(name, dir string) (*runAs, error) {
	ra, err := lookupRunAs(name)
	if err != nil {
		return nil, err
	}
	if ra.uid == 0 {
		return nil, fmt.Errorf("jobs must run as an unprivileged user, not %s (uid 0)", ra.name)
	}
	euid := os.Geteuid()
	if int(ra.uid) == euid {
		return nil, nil
	}
	if euid != 0 {
		return nil, fmt.Errorf("running jobs as %s needs the worker to run as root (it runs as uid %d); "+
			"start the worker as root, or leave GPUFLOW_LOCAL_RUN_AS unset to run jobs as the worker's own user", ra.name, euid)
	}
	// The job directory: others may pass through (to their work
	// directory), never list it or write in it.
	if err := os.Chmod(dir, 0o711); err != nil { // #nosec G302 -- the run-as user must pass through the job directory (execute only: it cannot list or write it)
		return nil, fmt.Errorf("job directory: %w", err)
	}
	if err := ra.canReach(dir); err != nil {
		return nil, err
	}
	return ra, nil
}

// canReach checks that the account may pass through every directory from
// / down to dir.
func (ra *runAs) canReach(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			return nil // not a Unix file system; the start will tell
		}
		perm := st.Mode().Perm()
		pass := perm&0o001 != 0 ||
			(sys.Uid == ra.uid && perm&0o100 != 0) ||
			((sys.Gid == ra.gid || slices.Contains(ra.groups, sys.Gid)) && perm&0o010 != 0)
		if !pass {
			return fmt.Errorf("user %s cannot reach the job directory: %s is mode %o, owned by %d:%d (let others pass: chmod o+x %s)",
				ra.name, d, perm, sys.Uid, sys.Gid, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// credential is what the wrapper starts with.
func (ra *runAs) credential() *syscall.Credential {
	return &syscall.Credential{Uid: ra.uid, Gid: ra.gid, Groups: ra.groups}
}

// makeWorkDir creates the job's work directory, owned by the account,
// which reaches it through the job directory (0711, the worker's). The
// account can write there and nowhere else in the job directory, so it
// cannot forge the control files.
func (ra *runAs) makeWorkDir(dir string) (string, error) {
	if err := os.Chmod(dir, 0o711); err != nil { // #nosec G302 -- the run-as user must pass through the job directory (execute only: it cannot list or write it)
		return "", err
	}
	w := filepath.Join(dir, workDirName)
	if err := os.Mkdir(w, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	st, err := os.Lstat(w)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", fmt.Errorf("%s is not a directory", w)
	}
	if err := os.Lchown(w, int(ra.uid), int(ra.gid)); err != nil {
		return "", err
	}
	return w, nil
}
