<?php
// Isolation probe: ?set=1 stores this release's id in APCu; every call
// shows what APCu holds under that key in this pool.
header('Content-Type: application/json');
if (isset($_GET['set'])) {
    apcu_store('fpmux_probe', '__RELEASE__');
}
echo json_encode(['release' => '__RELEASE__', 'value' => apcu_fetch('fpmux_probe')]);
