package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
)

// fakeInvitations is an in-memory gpuflow.InvitationStore over a
// fakeUsers, with the store's rules: one use, before expiry, for its
// email only, atomically with the account.
type fakeInvitations struct {
	users *fakeUsers
	now   func() time.Time
	mu    sync.Mutex
	byKey map[string]*gpuflow.Invitation // code hash -> invitation
}

func (f *fakeInvitations) CreateInvitation(_ context.Context, inv *gpuflow.Invitation, hash []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := *inv
	f.byKey[string(hash)] = &c
	return nil
}

func (f *fakeInvitations) CreateUserInvited(ctx context.Context, u *gpuflow.User, hash []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	inv := f.byKey[string(hash)]
	email := strings.ToLower(strings.TrimSpace(u.Email))
	if inv == nil || inv.UsedAt != nil || !f.now().Before(inv.ExpiresAt) || (inv.Email != "" && inv.Email != email) {
		return gpuflow.Errorf(gpuflow.EFORBIDDEN, "no usable invitation")
	}
	if err := f.users.CreateUser(ctx, u); err != nil {
		return err
	}
	now := f.now()
	inv.UsedAt, inv.UsedBy = &now, u.ID
	return nil
}

func (b *bundle) withInvitations() *fakeInvitations {
	inv := &fakeInvitations{users: b.users, now: b.srv.now, byKey: map[string]*gpuflow.Invitation{}}
	b.srv.auth.invitations = inv
	return inv
}

func (b *bundle) userCount() int {
	b.users.mu.Lock()
	defer b.users.mu.Unlock()
	return len(b.users.byID)
}

const carol = `{"email":"carol@example.com","password":"correct horse"`

func TestRegistrationModes(t *testing.T) {
	t.Parallel()

	t.Run("ClosedByDefault", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.auth.registration = "" // as an api.Config that does not say
		before := b.userCount()
		for _, body := range []string{carol + `}`, carol + `,"invite_code":"gfinv_whatever"}`} {
			e := wantCoded(t, b.do(t, http.MethodPost, "/auth/register", body, jsonCT, anonymous),
				http.StatusForbidden, codeRegisterDisabled)
			if e.Error.Details["registration"] != gpuflow.RegistrationClosed {
				t.Errorf("details = %v", e.Error.Details)
			}
		}
		if b.userCount() != before {
			t.Error("a closed server registered an account")
		}
	})

	t.Run("Invite", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.auth.registration = gpuflow.RegistrationInvite
		b.withInvitations()
		before := b.userCount()
		// Without a code, with a made-up one: refused, nothing stored.
		wantCoded(t, b.do(t, http.MethodPost, "/auth/register", carol+`}`, jsonCT, anonymous),
			http.StatusForbidden, codeRegisterDisabled)
		wantCoded(t, b.do(t, http.MethodPost, "/auth/register", carol+`,"invite_code":"gfinv_madeup"}`, jsonCT, anonymous),
			http.StatusForbidden, codeRegisterBadInvitation)

		// A superuser makes a code; it registers one account.
		rec := b.do(t, http.MethodPost, "/users/invitations", "", b.as(adminID))
		if rec.Code != http.StatusCreated || rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("invitation: %d %s (Cache-Control %q)", rec.Code, rec.Body, rec.Header().Get("Cache-Control"))
		}
		inv := decode[invitationView](t, rec)
		if !strings.HasPrefix(inv.Code, "gfinv_") || len(inv.Code) < 30 || inv.Email != nil ||
			!inv.ExpiresAt.Equal(testNow.Add(72*time.Hour)) || inv.Register != "/auth/register" {
			t.Fatalf("invitation = %+v", inv)
		}
		// The store keeps the code's hash, never the code.
		for h := range b.srv.auth.invitations.(*fakeInvitations).byKey {
			if strings.Contains(h, inv.Code) || !bytes.Equal([]byte(h), auth.HashInvitationCode(inv.Code)) {
				t.Error("the store was given the code, not its hash")
			}
		}
		rec = b.do(t, http.MethodPost, "/auth/register", carol+`,"invite_code":" `+inv.Code+` "}`, jsonCT, anonymous)
		if rec.Code != http.StatusCreated {
			t.Fatalf("register with the code: %d %s", rec.Code, rec.Body)
		}
		if u := decode[userView](t, rec); u.IsSuperuser || u.CanRunLocal || !u.IsActive {
			t.Errorf("invited account = %+v", u)
		}
		wantCoded(t, b.do(t, http.MethodPost, "/auth/register",
			`{"email":"dave@example.com","password":"correct horse","invite_code":"`+inv.Code+`"}`, jsonCT, anonymous),
			http.StatusForbidden, codeRegisterBadInvitation)
		if b.userCount() != before+1 {
			t.Errorf("%d accounts, want %d", b.userCount(), before+1)
		}

		// A code for one email registers that email only, and expires.
		rec = b.do(t, http.MethodPost, "/users/invitations", `{"email":"Erin@Example.com","expires_in_hours":1}`,
			jsonCT, b.as(adminID))
		inv = decode[invitationView](t, rec)
		if rec.Code != http.StatusCreated || inv.Email == nil || *inv.Email != "erin@example.com" {
			t.Fatalf("invitation for erin: %d %s", rec.Code, rec.Body)
		}
		wantCoded(t, b.do(t, http.MethodPost, "/auth/register",
			`{"email":"mallory@example.com","password":"correct horse","invite_code":"`+inv.Code+`"}`, jsonCT, anonymous),
			http.StatusForbidden, codeRegisterBadInvitation)
		if rec := b.do(t, http.MethodPost, "/auth/register",
			`{"email":"erin@example.com","password":"correct horse","invite_code":"`+inv.Code+`"}`, jsonCT, anonymous); rec.Code != http.StatusCreated {
			t.Errorf("erin with her code: %d %s", rec.Code, rec.Body)
		}
	})

	t.Run("InvitationsAreForSuperusers", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.withInvitations()
		wantError(t, b.do(t, http.MethodPost, "/users/invitations", "", b.as(aliceID)), http.StatusForbidden, "forbidden")
		wantError(t, b.do(t, http.MethodPost, "/users/invitations", "", anonymous), http.StatusUnauthorized, "unauthorized")
		for _, body := range []string{`{"expires_in_hours":0}`, `{"expires_in_hours":2161}`, `{"email":"x"}`, `{"code":"mine"}`, `[`} {
			if rec := b.do(t, http.MethodPost, "/users/invitations", body, jsonCT, b.as(adminID)); rec.Code != http.StatusBadRequest {
				t.Errorf("%s: %d %s", body, rec.Code, rec.Body)
			}
		}
		if n := len(b.srv.auth.invitations.(*fakeInvitations).byKey); n != 0 {
			t.Errorf("%d invitations stored by refused requests", n)
		}
		b.srv.auth.invitations = nil
		wantError(t, b.do(t, http.MethodPost, "/users/invitations", "", b.as(adminID)), http.StatusServiceUnavailable, "unavailable")
	})
}

func TestPatchUser(t *testing.T) {
	t.Parallel()
	b := setup(t)
	patch := func(id, body string, h header) *httptest.ResponseRecorder {
		return b.do(t, http.MethodPatch, "/users/"+id, body, jsonCT, h)
	}

	t.Run("ErrForbidden", func(t *testing.T) {
		wantError(t, patch(bobID, `{"can_run_local":true}`, b.as(aliceID)), http.StatusForbidden, "forbidden")
		wantError(t, patch(aliceID, `{"is_superuser":true}`, b.as(aliceID)), http.StatusForbidden, "forbidden")
		if u, _ := b.users.User(context.Background(), aliceID); u.IsSuperuser || u.CanRunLocal {
			t.Error("a user changed their own rights")
		}
	})
	t.Run("ErrBadInput", func(t *testing.T) {
		wantError(t, patch("not-a-uuid", `{"is_active":true}`, b.as(adminID)), http.StatusNotFound, "not_found")
		wantError(t, patch(uuid.NewString(), `{"is_active":true}`, b.as(adminID)), http.StatusNotFound, "not_found")
		wantError(t, patch(bobID, `{}`, b.as(adminID)), http.StatusBadRequest, "validation_failed")
		wantError(t, patch(bobID, `{"email":"x@example.com"}`, b.as(adminID)), http.StatusBadRequest, "validation_failed")
		wantError(t, patch(bobID, `{"is_active":"no"}`, b.as(adminID)), http.StatusBadRequest, "validation_failed")
		wantError(t, patch(adminID, `{"is_superuser":false}`, b.as(adminID)), http.StatusConflict, "conflict")
		wantError(t, patch(adminID, `{"is_active":false}`, b.as(adminID)), http.StatusConflict, "conflict")
	})
	t.Run("OK", func(t *testing.T) {
		rec := patch(bobID, `{"can_run_local":true}`, b.as(adminID))
		if rec.Code != http.StatusOK {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		if u := decode[userView](t, rec); !u.CanRunLocal || !u.IsActive || u.IsSuperuser {
			t.Errorf("bob = %+v", u)
		}
		// Deactivated: bob's token stops working at once.
		if rec := patch(bobID, `{"is_active":false}`, b.as(adminID)); rec.Code != http.StatusOK {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		wantError(t, b.do(t, http.MethodGet, "/users/me", "", b.as(bobID)), http.StatusUnauthorized, "unauthorized")
	})
}

// TestLocalPolicy: only superusers, accounts with can_run_local and those
// GPUFLOW_LOCAL_USERS lists run jobs on the worker's host; others' jobs
// are kept off it, or refused when they ask for it.
func TestLocalPolicy(t *testing.T) {
	t.Parallel()
	cpuJob := `{"command":["echo","hi"],"gpu_count":0}`
	gpuJob := `{"command":["python","train.py"],"gpu_type":"RTX4090"}`

	t.Run("ErrForbiddenWhenAsked", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.cfg.Auth.Local = gpuflow.LocalPolicy{}
		for _, body := range []string{
			`{"command":["echo","hi"],"gpu_count":0,"provider":"local"}`,
			`{"command":["echo","hi"],"gpu_count":0,"providers":["runpod","local"]}`,
		} {
			e := wantError(t, b.submit(t, body), http.StatusForbidden, "forbidden")
			if ps, _ := e.Error.Details["providers"].([]any); len(ps) != 1 || ps[0] != "local" {
				t.Errorf("details = %v", e.Error.Details)
			}
		}
		b.assertNothingStarted(t)
	})

	t.Run("KeptOffTheHost", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.cfg.Auth.Local = gpuflow.LocalPolicy{}
		// A CPU-only job only the host could run: nothing else can.
		wantError(t, b.submit(t, cpuJob), http.StatusUnprocessableEntity, "unschedulable")
		b.assertNothingStarted(t)
		// A GPU job goes elsewhere, and its spec says so: the queue never
		// admits it to the host.
		_, in := b.expectStart(t)
		rec := b.submit(t, gpuJob)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		if want := []string{"runpod", "tencent"}; !slices.Equal(in.Spec.Providers, want) {
			t.Errorf("workflow spec providers = %v, want %v", in.Spec.Providers, want)
		}
		// Recommendations leave the host out for this account.
		recs := decode[struct {
			Recommendations map[string]*recommendation `json:"recommendations"`
			Reasons         map[string][]string        `json:"reasons"`
		}](t, b.do(t, http.MethodGet, "/api/gpu/scheduling/recommendations?gpu_count=0", ""))
		for st, r := range recs.Recommendations {
			if r != nil && r.Provider == "local" {
				t.Errorf("%s recommends local", st)
			}
		}
		if len(recs.Reasons["local"]) == 0 {
			t.Errorf("reasons = %v, want one for local", recs.Reasons)
		}
	})

	t.Run("OnlyTheHost", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.cfg.Providers = gpuflow.Providers{b.local}
		b.srv.cfg.Auth.Local = gpuflow.LocalPolicy{}
		wantError(t, b.submit(t, cpuJob), http.StatusForbidden, "forbidden")
		b.assertNothingStarted(t)
	})

	t.Run("Allowed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.cfg.Auth.Local = gpuflow.LocalPolicy{Users: []string{"Alice@Example.com"}}
		b.users.edit(bobID, func(u *gpuflow.User) { u.CanRunLocal = true })
		for _, who := range []string{aliceID, bobID, adminID} {
			_, in := b.expectStart(t)
			rec := b.do(t, http.MethodPost, "/api/gpu/jobs/submit", cpuJob, jsonCT, b.as(who))
			if rec.Code != http.StatusAccepted {
				t.Fatalf("%s: %d %s", who, rec.Code, rec.Body)
			}
			if got := decode[submitResponse](t, rec).Provider; got != "local" || len(in.Spec.Providers) != 0 {
				t.Errorf("%s: provider %s, spec providers %v", who, got, in.Spec.Providers)
			}
		}
	})
}
