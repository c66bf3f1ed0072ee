// This file owns the errors the supervisor's domain returns: each carries
// one of the sentinels below, which callers branch on with errors.Is, and
// api.go answers each sentinel with its HTTP status (statusOf). The domain
// says what went wrong; only api.go knows the numbers.

package supervisor

import (
	"errors"
	"fmt"
)

// The kinds of domain error, for errors.Is.
var (
	ErrInvalid     = errors.New("invalid request")                          // a malformed id, root or body
	ErrNotFound    = errors.New("release not known")                        // no such release
	ErrConflict    = errors.New("conflicts with the state of the releases") // retry once that state changed
	ErrUnusable    = errors.New("release cannot serve")                     // its root, checks or warm-up refused it
	ErrNotRecorded = errors.New("state not recorded")                       // state_dir could not record a switch
	ErrPoolFailed  = errors.New("pool failed")                              // php-fpm did not start or answer
	ErrUnavailable = errors.New("fpmux unavailable")                        // shutting down or upgrading
	ErrTimeout     = errors.New("timed out")                                // the caller's deadline passed first
)

// Error is a domain error: its message, and Status, the HTTP status api.go
// answers it with (statusOf its kind).
type Error struct {
	Status int
	Msg    string
	kind   error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the error's kind, so that errors.Is(err, ErrConflict)
// holds for a conflict.
func (e *Error) Unwrap() error { return e.kind }

// newError returns an error of kind with a formatted message.
func newError(kind error, format string, args ...any) error {
	return &Error{Status: statusOf(kind), Msg: fmt.Sprintf(format, args...), kind: kind}
}

// rewrap returns err under a new message that keeps its kind; an error of
// no kind becomes one of kind fallback.
func rewrap(err, fallback error, format string, args ...any) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{Status: e.Status, Msg: fmt.Sprintf(format, args...), kind: e.kind}
	}
	return newError(fallback, format, args...)
}
