<?php
// Front probe: one JSON line with what PHP saw of the request ($_SERVER,
// $_GET, $_POST, the body's length and sha256, each upload's name, size
// and sha256) and the release this file belongs to; with ?mb=N, N MiB of
// lines follow ("%08d " and md5 of the line number, 42 bytes each, flushed
// every 64 KiB), which a test regenerates to hash the stream it received;
// with ?status=N, the answer has that status, two cookies and a header.
header('Content-Type: text/plain');
if (isset($_GET['status'])) { // ?status=N answers N with two cookies and a header
    http_response_code((int) $_GET['status']);
    setcookie('a', '1');
    setcookie('b', '2');
    header('X-Info: set by PHP');
}
$body = file_get_contents('php://input');
$files = [];
foreach ($_FILES as $field => $f) {
    $files[$field] = [
        'name' => $f['name'],
        'size' => $f['size'],
        'error' => $f['error'],
        'sha256' => $f['error'] === UPLOAD_ERR_OK ? hash_file('sha256', $f['tmp_name']) : '',
    ];
}
echo json_encode([
    'release' => '__RELEASE__',
    'server' => $_SERVER,
    'get' => $_GET,
    'post' => $_POST,
    'input_len' => strlen($body),
    'input_sha256' => hash('sha256', $body),
    'files' => (object) $files,
], JSON_UNESCAPED_SLASHES), "\n";
$left = (int)($_GET['mb'] ?? 0) << 20;
if ($left > 0) {
    while (ob_get_level() > 0) {
        ob_end_flush();
    }
    $buf = '';
    for ($i = 0; $left > 0; $i++) {
        $line = sprintf("%08d %s\n", $i, md5((string) $i));
        $buf .= substr($line, 0, $left);
        $left -= strlen($line);
        if (strlen($buf) >= 65536 || $left <= 0) {
            echo $buf;
            flush();
            $buf = '';
        }
    }
}
