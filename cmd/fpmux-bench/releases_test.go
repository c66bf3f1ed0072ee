package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAPCuPage runs the APCu page with PHP's CLI: with APCu on, it answers
// the 1 KB page (from its store, then as a miss would); with APCu off, it
// says so instead of answering the page.
func TestAPCuPage(t *testing.T) {
	php, err := exec.LookPath("php")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("php CLI: %v", err)
		}
		t.Skipf("php CLI: %v", err)
	}
	page := filepath.Join(t.TempDir(), "apcu.php")
	if err := writeFile(page, apcuPHP); err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat(apcuLine, apcuRepeat)
	if n := len(want); n < 900 || n > 1100 {
		t.Errorf("the page is %d bytes, want about 1 KB", n)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"APCu on", []string{"-d", "apc.enable_cli=1"}, want},
		{"APCu off", []string{"-d", "apc.enable_cli=0"}, "APCu is not enabled in this pool\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(php, append(tt.args, page)...).CombinedOutput()
			if err != nil {
				t.Fatalf("php %s: %v\n%s", page, err, out)
			}
			if string(out) != tt.want {
				t.Errorf("php %s answered %q, want %q", page, out, tt.want)
			}
		})
	}
}
