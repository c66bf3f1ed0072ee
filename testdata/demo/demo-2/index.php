<?php
// fpmux demo page: says which release served it and whether every file it
// read came from that release's tree.
require __DIR__ . '/lib/version.php';
require __DIR__ . '/lib/message.php';

$sleepMs = min(max((int) ($_GET['sleep_ms'] ?? 0), 0), 2000);
if ($sleepMs > 0) {
    usleep($sleepMs * 1000);
}

$fpmuxRelease = $_SERVER['FPMUX_RELEASE'] ?? '';
$consistent = RELEASE_ID === MESSAGE_RELEASE && $fpmuxRelease === RELEASE_ID;

header('Content-Type: text/plain; charset=utf-8');
echo 'release: ', RELEASE_ID, "\n";
echo 'message: ', demo_message(), "\n";
echo 'new in demo-2: the php version is ', PHP_VERSION, "\n";
echo 'time: ', gmdate('H:i:s'), " UTC\n";
echo 'script: ', __FILE__, "\n";
echo 'fpmux release param: ', $fpmuxRelease === '' ? '(not set)' : $fpmuxRelease, "\n";
echo 'php pid: ', getmypid(), "\n";
echo 'consistent: ', $consistent ? 'yes' : 'no', "\n";
