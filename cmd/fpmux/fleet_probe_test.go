package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestProbeError: an etcd that refuses the user is named as refusing, with
// what to fix; only an error without etcd's answer says unreachable.
func TestProbeError(t *testing.T) {
	eps := []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{rpctypes.ErrPermissionDenied, "etcd at https://10.0.0.1:2379,https://10.0.0.2:2379 refused to let fpmux read /fpmux/shop/: etcdserver: permission denied (give -username"},
		{fmt.Errorf("get: %w", rpctypes.ErrPermissionDenied), "refused to let fpmux read /fpmux/shop/"},
		{rpctypes.ErrAuthFailed, "refused fpmux's credentials: etcdserver: authentication failed, invalid user ID or password"},
		{rpctypes.ErrInvalidAuthToken, "refused fpmux's credentials"},
		{rpctypes.ErrUserEmpty, "refused fpmux's credentials"},
		{errors.New("context deadline exceeded"), "etcd unreachable at https://10.0.0.1:2379,https://10.0.0.2:2379: context deadline exceeded"},
	} {
		got := probeError(eps, "/fpmux/shop/", tt.err)
		if !strings.Contains(got.Error(), tt.want) {
			t.Errorf("probeError(%v) = %q, want it to contain %q", tt.err, got, tt.want)
		}
		if !errors.Is(got, tt.err) {
			t.Errorf("probeError(%v) does not wrap it", tt.err)
		}
	}
}
