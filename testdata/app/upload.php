<?php
// Upload probe: the length and md5 of the request body as PHP read it, so a
// test can tell a body that arrived whole from one cut or mixed up.
header('Content-Type: text/plain');
$body = file_get_contents('php://input');
echo 'len=', strlen($body), ' md5=', md5($body), "\n";
