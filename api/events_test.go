package api

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

func TestTaskEvents(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil)
	job, quiet, bobJob := env.job(env.alice), env.job(env.alice), env.job(env.bob)
	e1 := env.feed.publish(job, env.alice, gpuflow.EventStatus, gpuflow.StatusRunning, "")
	env.feed.publish(bobJob, env.bob, gpuflow.EventStatus, gpuflow.StatusRunning, "")
	e2 := env.feed.publish(job, env.alice, gpuflow.EventProgress, "", `{"percent":40}`)

	resp := env.get(t, "/api/gpu/tasks/"+job+"/events", env.aliceTok)
	var got struct {
		TaskID string           `json:"task_id"`
		Events []map[string]any `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, err %v", resp.StatusCode, err)
	}
	if got.TaskID != job || len(got.Events) != 2 {
		t.Fatalf("got %+v", got)
	}
	for i, want := range []gpuflow.Event{e1, e2} {
		ev := got.Events[i]
		if ev["seq"] != float64(want.ID) || ev["task_id"] != job || ev["job_seq"] != float64(i+1) || ev["type"] != want.Type {
			t.Errorf("event %d = %v, want %+v", i, ev, want)
		}
		if _, ok := ev["owner_id"]; ok {
			t.Errorf("event %d shows its owner", i)
		}
	}
	if d, _ := json.Marshal(got.Events[1]["data"]); string(d) != `{"percent":40}` {
		t.Errorf("data %s", d)
	}

	t.Run("NoEvents", func(t *testing.T) {
		resp := env.get(t, "/api/gpu/tasks/"+quiet+"/events", env.aliceTok)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != `{"task_id":"`+quiet+`","events":[]}`+"\n" {
			t.Errorf("status %d, body %s", resp.StatusCode, body)
		}
	})
	t.Run("NotVisible", func(t *testing.T) {
		for _, path := range []string{bobJob, "6f1e4bde-0000-4000-8000-000000000000", "nope"} {
			if resp := env.get(t, "/api/gpu/tasks/"+path+"/events", env.aliceTok); resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: status %d, want 404", path, resp.StatusCode)
			}
		}
		if resp := env.get(t, "/api/gpu/tasks/"+bobJob+"/events", env.rootTok); resp.StatusCode != http.StatusOK {
			t.Errorf("superuser: status %d, want 200", resp.StatusCode)
		}
		if resp := env.get(t, "/api/gpu/tasks/"+job+"/events", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("no token: status %d, want 401", resp.StatusCode)
		}
	})
}

// TestFollowLogsWakesOnNotifications: a followed log is re-read when the
// feed says the job's output grew or the job changed, not on a timer (the
// fallback tick is an hour here).
func TestFollowLogsWakesOnNotifications(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil, withServer(func(s *Server) {
		s.live.logFallback = time.Hour
		s.logPoll = time.Hour
	}))
	job := env.job(env.alice)

	resp := env.get(t, "/api/gpu/tasks/"+job+"/logs?follow=1", env.aliceTok)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	lines := make(chan string, 10)
	go func() {
		defer close(lines)
		r := bufio.NewReader(resp.Body)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			lines <- l
		}
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok || l != want {
				t.Fatalf("read %q (open %v), want %q", l, ok, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q within 10s", want)
		}
	}
	ctx := t.Context()
	// New output, announced on the log channel.
	if err := env.store.AppendLog(ctx, job, 0, []byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	env.feed.logNotice(job)
	expect("hello\n")
	// New output, then one of the job's events.
	if err := env.store.AppendLog(ctx, job, 6, []byte("world\n")); err != nil {
		t.Fatal(err)
	}
	env.feed.publish(job, env.alice, gpuflow.EventLog, "", "")
	expect("world\n")
	// The job ends: the last output is sent and the stream ends.
	if err := env.store.AppendLog(ctx, job, 12, []byte("bye\n")); err != nil {
		t.Fatal(err)
	}
	env.store.setStatus(job, gpuflow.StatusSucceeded)
	env.feed.publish(job, env.alice, gpuflow.EventStatus, gpuflow.StatusSucceeded, "")
	expect("bye\n")
	select {
	case l, ok := <-lines:
		if ok {
			t.Fatalf("read %q after the end", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end with the job")
	}
	if n := watchedJobs(env.srv.live.hub); n != 0 {
		t.Errorf("%d jobs still watched", n)
	}
}

// TestFollowLogsEndsOnShutdown: Shutdown ends followed logs at once.
func TestFollowLogsEndsOnShutdown(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil, withServer(func(s *Server) { s.live.logFallback = time.Hour }))
	job := env.job(env.alice)
	resp := env.get(t, "/api/gpu/tasks/"+job+"/logs?follow=1", env.aliceTok)
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(resp.Body)
		done <- err
	}()
	env.srv.stopLive()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stream ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end on shutdown")
	}
}
