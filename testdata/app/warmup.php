<?php
// Warm-up probe. A request carrying fpmux's warm-up header counts itself in
// this pool's APCu, with the worker that ran it and the URI it came with;
// any other request shows what was counted. ?fail=1 answers a warm-up 500. Only fpmux's warm-up reaches a
// release's pool before it is active, so a count seen by the first real
// request proves the warm-up ran there first.
header('Content-Type: application/json');
if (($_SERVER['HTTP_X_FPMUX_WARMUP'] ?? '') === '1') {
    apcu_add('warm_hits', 0);
    apcu_inc('warm_hits');
    apcu_add('warm_pids', 0);
    if (apcu_add('warm_pid_' . getmypid(), 1)) {
        apcu_inc('warm_pids');
    }
    apcu_store('warm_uri', $_SERVER['REQUEST_URI'] ?? '');
    apcu_store('warm_release', $_SERVER['FPMUX_RELEASE'] ?? '');
    if (isset($_GET['fail'])) {
        http_response_code(500); // a warm-up that fails
    }
    echo "{}\n";
    return;
}
echo json_encode([
    'release' => '__RELEASE__',
    'hits' => (int) apcu_fetch('warm_hits'),
    'pids' => (int) apcu_fetch('warm_pids'),
    'uri' => (string) apcu_fetch('warm_uri'),
    'warm_release' => (string) apcu_fetch('warm_release'),
]), "\n";
