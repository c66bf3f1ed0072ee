<?php
// Echoes what PHP received of the X-Probe header, byte for byte (hex), so a
// test can see fpmux passes odd params unchanged.
header('Content-Type: text/plain');
echo 'release=', $_SERVER['FPMUX_RELEASE'] ?? '', ' probe=', bin2hex($_SERVER['HTTP_X_PROBE'] ?? ''), "\n";
