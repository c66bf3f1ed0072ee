<?php
// Isolation probe: inc.php is found through include_path, which fpmux sets
// to the release's own lib/ ({release_root}/lib).
include 'inc.php';
header('Content-Type: application/json');
echo json_encode([
    'release' => '__RELEASE__',
    'inc' => $inc,
    'include_path' => get_include_path(),
    'files' => get_included_files(),
]);
