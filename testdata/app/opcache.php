<?php
// Isolation probe: the scripts this pool's opcache holds.
header('Content-Type: application/json');
$s = opcache_get_status(true);
echo json_encode([
    'release' => '__RELEASE__',
    'enabled' => $s !== false && $s['opcache_enabled'],
    'scripts' => $s ? array_keys($s['scripts']) : [],
]);
