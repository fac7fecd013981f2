package local

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/gpuflow/gpuflow"
)

// TestJobEnvIsAllowlisted: a job's environment is the inherited minimum
// (inheritedEnv), its own variables and gpuflow's, nothing else: none of
// the worker's secrets (its JWT key, database URL, cloud keys) reach it.
func TestJobEnvIsAllowlisted(t *testing.T) {
	secrets := map[string]string{
		"JWT_SECRET":                      "jwt-secret-value-0123456789abcdef",
		"JWT_SECRET_FILE":                 "/run/secrets/jwt",
		"DATABASE_URL":                    "postgres://gpuflow:pw@db/gpuflow",
		"RUNPOD_API_KEY":                  "rp-key-value",
		"TENCENTCLOUD_SECRET_ID":          "tc-id-value",
		"TENCENTCLOUD_SECRET_KEY":         "tc-key-value",
		"ALIBABA_CLOUD_ACCESS_KEY_ID":     "ali-id-value",
		"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "ali-secret-value",
		"TEMPORAL_ADDRESS":                "temporal:7233",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	p := newProvider(t, Config{})
	req := cpuJob("envdump", "env")
	req.Spec.Env = map[string]string{"MY_SETTING": "x=y z"}
	provision(t, p, req)
	waitState(t, p, "envdump", gpuflow.MachineExited)
	log := logOf(t, p, "envdump")
	for k, v := range secrets {
		if strings.Contains(log, k+"=") || strings.Contains(log, v) {
			t.Errorf("the job sees the worker's %s", k)
		}
	}
	allowed := append(slices.Clone(inheritedEnv), "MY_SETTING", "GPUFLOW_JOB_ID", "CUDA_VISIBLE_DEVICES",
		"CUDA_DEVICE_ORDER", "PWD", "SHLVL", "_", "OLDPWD")
	for line := range strings.SplitSeq(strings.TrimSpace(log), "\n") {
		name, _, _ := strings.Cut(line, "=")
		if !slices.Contains(allowed, name) {
			t.Errorf("the job's environment has %s, which is not on the allowlist", name)
		}
	}
	if !strings.Contains(log, "MY_SETTING=x=y z\n") || !strings.Contains(log, "GPUFLOW_JOB_ID=envdump\n") {
		t.Errorf("env = %q, want the job's own variables", log)
	}
}

// runAsTestDir is a job directory nobody can reach (the test's temporary
// directories are 0700).
func runAsTestDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(base, "jobs")
}

// TestRunAs: with RunAs, a job runs as that unprivileged user, in its work
// directory, and cannot read the worker's files, forge the job's control
// files, list the job directory or signal the worker; its exit code is
// recorded all the same, and Terminate stops it.
func TestRunAs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running jobs as another user needs root")
	}
	ra, err := lookupRunAs("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	t.Parallel()
	dir := runAsTestDir(t)
	p := newProvider(t, Config{Dir: dir, RunAs: "nobody"})
	secret := filepath.Join(filepath.Dir(dir), "jwt-secret")
	if err := os.WriteFile(secret, []byte("worker-only"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := `id -u; id -g; pwd; echo "home=$HOME user=$USER"
cat ` + secret + ` 2>/dev/null && echo READ-SECRET
echo 1 2 >../pid 2>/dev/null && echo WROTE-PID
true >../terminated 2>/dev/null && echo WROTE-TERMINATED
echo 0 >../exit_code 2>/dev/null && echo WROTE-EXIT
ls .. >/dev/null 2>&1 && echo LISTED
kill -0 ` + strconv.Itoa(os.Getpid()) + ` 2>/dev/null && echo SIGNALLED-WORKER
echo made >out.txt
exit 7`
	provision(t, p, cpuJob("asnobody", "sh", "-c", script))
	m := waitState(t, p, "asnobody", gpuflow.MachineExited)
	if m.ExitCode == nil || *m.ExitCode != 7 {
		t.Errorf("machine = %+v, want exit code 7", m)
	}
	log := logOf(t, p, "asnobody")
	work := filepath.Join(p.jobDir("asnobody"), workDirName)
	want := strconv.Itoa(int(ra.uid)) + "\n" + strconv.Itoa(int(ra.gid)) + "\n" + work + "\n"
	if !strings.HasPrefix(log, want) {
		t.Errorf("log = %q, want it to start %q", log, want)
	}
	if !strings.Contains(log, "user=nobody") || strings.Contains(log, "home=/root") {
		t.Errorf("log = %q, want the account's USER and not the worker's HOME", log)
	}
	for _, bad := range []string{"READ-SECRET", "WROTE-PID", "WROTE-TERMINATED", "WROTE-EXIT", "LISTED", "SIGNALLED-WORKER"} {
		if strings.Contains(log, bad) {
			t.Errorf("the job could: %s", bad)
		}
	}
	st, err := os.Stat(filepath.Join(work, "out.txt"))
	if err != nil {
		t.Fatalf("the job's own file: %v", err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != ra.uid {
		t.Errorf("out.txt is owned by %d, want %d", sys.Uid, ra.uid)
	}

	// A running job of that user is stopped by Terminate.
	provision(t, p, cpuJob("sleeper", "sleep", "300"))
	waitState(t, p, "sleeper", gpuflow.MachineRunning)
	rec := pidOf(t, p, "sleeper")
	if err := p.Terminate(context.Background(), "sleeper"); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	waitState(t, p, "sleeper", gpuflow.MachineGone)
	if processRuns(rec.PID) {
		t.Error("the job still runs after Terminate")
	}
}

func TestRunAsRefused(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		runAs string
		dir   func(t *testing.T) string
		want  string
	}{
		"Root":        {"root", runAsTestDir, "unprivileged user"},
		"Uid0":        {"0", runAsTestDir, "unprivileged user"},
		"UnknownUser": {"no-such-user-gpuflow", runAsTestDir, "no user"},
		// t.TempDir() is 0700: nobody cannot pass through it.
		"Unreachable": {"nobody", func(t *testing.T) string { return filepath.Join(t.TempDir(), "jobs") }, "cannot reach"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if name == "Unreachable" && os.Geteuid() != 0 {
				t.Skip("as another user than root, RunAs=nobody is refused before the directory is looked at")
			}
			_, err := New(Config{Dir: tc.dir(t), RunAs: tc.runAs, LookPath: noRuntimes})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "GPUFLOW_LOCAL_RUN_AS") {
				t.Errorf("New = %v, want an error about %q", err, tc.want)
			}
		})
	}
	if os.Geteuid() != 0 {
		_, err := New(Config{Dir: t.TempDir(), RunAs: "nobody", LookPath: noRuntimes})
		if err == nil || !strings.Contains(err.Error(), "needs the worker to run as root") {
			t.Errorf("New as uid %d = %v", os.Geteuid(), err)
		}
	}
}
