<?php
// Atomicity probe. Includes a.php and b.php, waits ?ms= milliseconds, then
// includes the release's late file, which the next release no longer has.
// Every file reports the release it belongs to: a response that names two
// releases is a mixed-version response, and a request that began on one
// release and looks for its late file in the next one dies with a fatal.
$parts = [];
require $_SERVER['DOCUMENT_ROOT'] . '/a.php';
require $_SERVER['DOCUMENT_ROOT'] . '/b.php';
usleep((int)($_GET['ms'] ?? 20) * 1000);
require $_SERVER['DOCUMENT_ROOT'] . '/late-__RELEASE__.php';
header('Content-Type: text/plain');
echo 'param=', $_SERVER['FPMUX_RELEASE'] ?? '', ' files=', implode(',', $parts), "\n";
