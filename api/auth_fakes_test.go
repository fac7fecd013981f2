package api

import (
	"context"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/gpuflow/gpuflow"
)

// fakeUsers is an in-memory gpuflow.UserStore.
type fakeUsers struct {
	mu      sync.Mutex
	byID    map[string]*gpuflow.User
	err     error // returned by every method when set
	lookups int   // calls of User
}

var _ gpuflow.UserStore = (*fakeUsers)(nil)

func newFakeUsers() *fakeUsers { return &fakeUsers{byID: map[string]*gpuflow.User{}} }

func (f *fakeUsers) CreateUser(_ context.Context, u *gpuflow.User) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	email, err := gpuflow.NormalizeEmail(u.Email)
	if err != nil {
		return err
	}
	for _, o := range f.byID {
		if o.Email == email {
			return gpuflow.Errorf(gpuflow.ECONFLICT, "user with this email already exists")
		}
	}
	if u.ID == "" {
		u.ID = uuid.NewString()
	}
	if _, ok := f.byID[u.ID]; ok {
		return gpuflow.Errorf(gpuflow.ECONFLICT, "user with this email already exists")
	}
	u.Email = email
	c := *u
	f.byID[u.ID] = &c
	return nil
}

func (f *fakeUsers) User(_ context.Context, id string) (*gpuflow.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.err != nil {
		return nil, f.err
	}
	u, ok := f.byID[id]
	if !ok {
		return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "user not found")
	}
	c := *u
	return &c, nil
}

func (f *fakeUsers) UserByEmail(_ context.Context, email string) (*gpuflow.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	email = strings.ToLower(strings.TrimSpace(email))
	for _, u := range f.byID {
		if u.Email == email {
			c := *u
			return &c, nil
		}
	}
	return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "user not found")
}

// edit changes the stored user id.
func (f *fakeUsers) edit(id string, change func(*gpuflow.User)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f.byID[id])
}

// remove deletes the user id.
func (f *fakeUsers) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.byID, id)
}

func (f *fakeUsers) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeUsers) UpdateUser(_ context.Context, id string, up gpuflow.UserUpdate) (*gpuflow.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	u, ok := f.byID[id]
	if !ok {
		return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "user not found")
	}
	applyUserUpdate(u, up)
	c := *u
	return &c, nil
}

// applyUserUpdate applies up to u, as a store does.
func applyUserUpdate(u *gpuflow.User, up gpuflow.UserUpdate) {
	if up.IsActive != nil {
		u.IsActive = *up.IsActive
	}
	if up.IsSuperuser != nil {
		u.IsSuperuser = *up.IsSuperuser
	}
	if up.CanRunLocal != nil {
		u.CanRunLocal = *up.CanRunLocal
	}
}
