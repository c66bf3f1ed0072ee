<?php
// Upgrade probe: when this pool's opcache started and its hits (the same
// php-fpm master keeps both across an fpmux upgrade), and what arrived of
// the request body (its length and md5).
header('Content-Type: text/plain');
$s = opcache_get_status(false);
$body = file_get_contents('php://input');
echo 'release=__RELEASE__',
    ' start=', $s ? $s['opcache_statistics']['start_time'] : 0,
    ' hits=', $s ? $s['opcache_statistics']['hits'] : 0,
    ' len=', strlen($body), ' md5=', md5($body), "\n";
