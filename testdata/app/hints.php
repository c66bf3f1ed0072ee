<?php
// Preview routing probe: which release served the request, and whether the
// routing headers (which fpmux removes) reached PHP.
header('Content-Type: text/plain');
echo 'param=', $_SERVER['FPMUX_RELEASE'] ?? '', ' file=__RELEASE__',
    ' release_header=', isset($_SERVER['HTTP_X_FPMUX_RELEASE']) ? 'seen' : 'absent',
    ' token_header=', isset($_SERVER['HTTP_X_FPMUX_PREVIEW_TOKEN']) ? 'seen' : 'absent', "\n";
