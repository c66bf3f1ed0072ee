package pool

import (
	"maps"
	"testing"
)

func TestWithPreloadUser(t *testing.T) {
	preload := map[string]string{"opcache.preload": "/srv/r1/preload.php"}
	tests := []struct {
		name       string
		euid       int
		ini        map[string]string
		directives map[string]string
		fallback   string
		wantUser   string // "" : not set
	}{
		{"root, the default worker user", 0, preload, nil, "www-data", "www-data"},
		{"root, the pool's user directive", 0, preload, map[string]string{"user": "app"}, "", "app"},
		{"root, a preload user given", 0, map[string]string{"opcache.preload": "/p.php", "opcache.preload_user": "deploy"}, nil, "www-data", "deploy"},
		{"root, no preload", 0, map[string]string{"opcache.jit": "tracing"}, nil, "www-data", ""},
		{"root, preload set empty", 0, map[string]string{"opcache.preload": ""}, nil, "www-data", ""},
		{"not root", 1000, preload, nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := maps.Clone(tt.ini)
			got := withPreloadUser(tt.euid, tt.ini, tt.directives, tt.fallback)
			if got["opcache.preload_user"] != tt.wantUser {
				t.Errorf("opcache.preload_user = %q, want %q", got["opcache.preload_user"], tt.wantUser)
			}
			if !maps.Equal(tt.ini, before) {
				t.Errorf("the caller's map changed: %v, was %v", tt.ini, before)
			}
		})
	}
}
