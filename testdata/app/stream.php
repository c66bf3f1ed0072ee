<?php
// Streaming probe: ?n= parts, each sent (flushed) ?ms= milliseconds after
// the last, so a test can tell a bound between reads from one on the whole.
header('Content-Type: text/plain');
while (ob_get_level() > 0) {
    ob_end_flush();
}
$n = (int)($_GET['n'] ?? 3);
for ($i = 0; $i < $n; $i++) {
    usleep((int)($_GET['ms'] ?? 100) * 1000);
    echo "part $i\n";
    flush();
}
