package pool

import (
	"strings"
	"testing"
)

// fpmFull is php-fpm 8.2's ?json&full answer with the given processes.
func fpmFull(procs ...string) string {
	return `{"pool":"r1","process manager":"static","start time":1796167237,"start since":19,"accepted conn":9,` +
		`"listen queue":0,"max listen queue":0,"listen queue len":0,"idle processes":0,"active processes":3,` +
		`"total processes":3,"max active processes":3,"max children reached":0,"slow requests":1, "processes":[` +
		strings.Join(procs, ",") + `]}`
}

func fpmProc(pid, state, method, uri string) string {
	return `{"pid":` + pid + `,"state":"` + state + `","start time":1796167237,"start since":19,"requests":3,` +
		`"request duration":1500,"request method":"` + method + `","request uri":"` + uri + `","content length":0,` +
		`"user":"-","script":"-","last request cpu":0.00,"last request memory":2097152}`
}

func TestParseStatusCountsFromProcesses(t *testing.T) {
	tests := []struct {
		name                      string
		body                      string
		total, active, idle, held int64
		wantErr                   string
	}{
		{"idle in accept", fpmFull(fpmProc("1", "Idle", "GET", "/a.php"), fpmProc("2", "Idle", "-", "-")), 2, 0, 2, 0, ""},
		// php-fpm counts these three active: two wait on kept connections.
		{"held by kept connections", fpmFull(fpmProc("1", "Reading headers", "-", "-"), fpmProc("2", "Reading headers", "", ""),
			fpmProc("3", "Running", "GET", "/x.php?token=1")), 3, 1, 2, 2, ""},
		{"reading a request's headers", fpmFull(fpmProc("1", "Reading headers", "POST", "/up.php")), 1, 1, 0, 0, ""},
		{"running and finishing", fpmFull(fpmProc("1", "Running", "GET", "/"), fpmProc("2", "Finishing", "GET", "/")), 2, 2, 0, 0, ""},
		{"no process list", `{"pool":"r1","idle processes":2,"total processes":2}`, 0, 0, 0, 0, "no per-process list"},
		{"not json", `<html>`, 0, 0, 0, 0, "decode status page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := parseStatus([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.TotalProcesses != tt.total || st.ActiveProcesses != tt.active || st.IdleProcesses != tt.idle || st.HeldProcesses != tt.held {
				t.Errorf("total/active/idle/held = %d/%d/%d/%d, want %d/%d/%d/%d", st.TotalProcesses, st.ActiveProcesses,
					st.IdleProcesses, st.HeldProcesses, tt.total, tt.active, tt.idle, tt.held)
			}
			if st.SlowRequests != 1 || st.Processes[0].LastRequestMemory != 2097152 || st.Processes[0].RequestDuration != 1500 {
				t.Errorf("figures not decoded: %+v", st)
			}
		})
	}
}
