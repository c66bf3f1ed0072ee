package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestDomainErrorKinds: each refusal carries its sentinel, for errors.Is,
// and api.go's status for that sentinel is the one the admin API always
// answered it with.
func TestDomainErrorKinds(t *testing.T) {
	s, dir := newTestSupervisor(t)
	for _, tc := range []struct {
		name   string
		call   func() error
		kind   error
		status int
	}{
		{"activate unknown", func() error { _, err := s.Activate("nope"); return err }, ErrNotFound, 404},
		{"retire unknown", func() error { _, err := s.Retire("nope"); return err }, ErrNotFound, 404},
		{"get unknown", func() error { _, err := s.Get(t.Context(), "nope"); return err }, ErrNotFound, 404},
		{"rollback with no history", func() error { _, err := s.Rollback(t.Context()); return err }, ErrConflict, 409},
		{"deploy bad id", func() error {
			_, err := s.Deploy(t.Context(), DeployRequest{ID: "../x", Root: "/srv"})
			return err
		}, ErrInvalid, 400},
		{"deploy relative root", func() error {
			_, err := s.Deploy(t.Context(), DeployRequest{ID: "r1", Root: "srv"})
			return err
		}, ErrInvalid, 400},
		{"deploy root outside allowed_roots", func() error {
			_, err := s.Deploy(t.Context(), DeployRequest{ID: "r1", Root: t.TempDir()})
			return err
		}, ErrUnusable, 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.kind) {
				t.Fatalf("error %v is not %v", err, tc.kind)
			}
			var e *Error
			if !errors.As(err, &e) || e.Status != tc.status {
				t.Errorf("error %v: status %+v, want %d", err, e, tc.status)
			}
		})
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "releases", "r1")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := s.Deploy(t.Context(), DeployRequest{ID: "r1", Root: root})
	if !errors.Is(err, ErrUnavailable) || !isStatus(err, 503) {
		t.Errorf("deploy after Close: %v, want %v with status 503", err, ErrUnavailable)
	}
}
