package postgres

import (
	"testing"

	"github.com/gpuflow/gpuflow"
)

func TestLogs(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	j := mustCreate(t, db, newJob()).ID

	if got, err := db.Logs(ctx, j, 0, 0); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Logs of a job without output = %q, %v; want empty", got, err)
	}
	for _, c := range []struct {
		off  int64
		data string
	}{{0, "hello "}, {6, "world"}, {11, "!!"}, {0, "HELLO "}, {20, "zz"}, {11, ""}} {
		if err := db.AppendLog(ctx, j, c.off, []byte(c.data)); err != nil {
			t.Fatalf("AppendLog(%d, %q): %v", c.off, c.data, err)
		}
	}

	for _, tc := range []struct {
		off   int64
		limit int
		want  string
	}{
		{0, 0, "hello world!!"}, // stops at the gap before 20; the re-sent chunk at 0 is ignored
		{3, 0, "lo world!!"},    // inside the first chunk
		{3, 4, "lo w"},          // across a chunk boundary, cut by limit
		{6, 5, "world"},
		{12, 0, "!"},
		{13, 0, ""}, // the gap
		{20, 0, "zz"},
		{21, 1, "z"},
		{22, 0, ""},
		{1000, 0, ""},
	} {
		got, err := db.Logs(ctx, j, tc.off, tc.limit)
		if err != nil || string(got) != tc.want {
			t.Errorf("Logs(%d, %d) = %q, %v; want %q", tc.off, tc.limit, got, err, tc.want)
		}
	}

	t.Run("ErrNotFound", func(t *testing.T) {
		for _, id := range []string{newID(), "nope"} {
			wantCode(t, "AppendLog("+id+")", db.AppendLog(ctx, id, 0, []byte("x")), gpuflow.ENOTFOUND)
			_, err := db.Logs(ctx, id, 0, 0)
			wantCode(t, "Logs("+id+")", err, gpuflow.ENOTFOUND)
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		wantCode(t, "AppendLog(-1)", db.AppendLog(ctx, j, -1, []byte("x")), gpuflow.EINVALID)
		_, err := db.Logs(ctx, j, -1, 0)
		wantCode(t, "Logs(-1)", err, gpuflow.EINVALID)
	})
}

// TestLogsLongerRetryWins: an attempt stored "ab" at 0 and died before
// recording its progress; the retry read further ("abcd" at 0, then "ef" at
// 4). Nothing may be lost between them.
func TestLogsLongerRetryWins(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	j := mustCreate(t, db, newJob()).ID
	for _, c := range []struct {
		off  int64
		data string
	}{{0, "ab"}, {0, "abcd"}, {4, "ef"}, {0, "ab"}} {
		if err := db.AppendLog(ctx, j, c.off, []byte(c.data)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := db.Logs(ctx, j, 0, 0); err != nil || string(got) != "abcdef" {
		t.Fatalf("Logs = %q, %v; want abcdef", got, err)
	}
}

func TestAppendLogTail(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	j := mustCreate(t, db, newJob()).ID
	for i, line := range []string{"one\n", "two\n", "three\n"} {
		off, err := db.AppendLogTail(ctx, j, []byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if want := []int64{0, 4, 8}[i]; off != want {
			t.Fatalf("line %d stored at %d, want %d", i, off, want)
		}
	}
	if got, err := db.Logs(ctx, j, 0, 0); err != nil || string(got) != "one\ntwo\nthree\n" {
		t.Fatalf("Logs = %q, %v", got, err)
	}
	if _, err := db.AppendLogTail(ctx, "6f1c7c1e-8d0a-4b43-9c39-7e9c2b1f0a11", []byte("x")); gpuflow.ErrorCode(err) != gpuflow.ENOTFOUND {
		t.Fatalf("unknown job: %v", err)
	}
}
