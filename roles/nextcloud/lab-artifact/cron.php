<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): not Nextcloud's cron.php. It checks
// what upstream's checks, then records the run in the database as
// upstream does (appconfig core lastcron).

require_once __DIR__ . '/lib/base.php';

use function LabNextcloud\{config, config_dir, db, fail, set_app_value};

if (PHP_SAPI !== 'cli') {
    http_response_code(403);
    exit;
}
$own = config_dir() . 'config.php';
if (!is_file($own)) {
    fail('Nextcloud is not installed');
}
if (fileowner($own) !== posix_getuid()) {
    fail("Console has to be executed with the user that owns the file config/config.php\n"
        . 'Current user id: ' . posix_getuid() . "\nOwner id of config.php: " . fileowner($own));
}
$c = config();
if (empty($c['installed'])) {
    fail('Nextcloud is not installed');
}
// Upstream's cron.php does nothing during maintenance or before an upgrade.
if (LabNextcloud\unavailable($c) !== null) {
    echo LabNextcloud\unavailable($c), " Skipping cron.\n";
    exit(0);
}
$db = db($c);
set_app_value($db, $c, 'core', 'lastcron', (string) time());
