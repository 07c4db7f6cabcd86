<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): not Nextcloud. A page naming the
// instance, read from its database, so that a request proves the whole
// chain: nginx vhost, php-fpm pool, config directory, PostgreSQL.

require_once __DIR__ . '/lib/base.php';
LabNextcloud\fail_if_broken();

use function LabNextcloud\{config, db, app_value, prefix};

header('Content-Type: text/html; charset=utf-8');
$c = config();
if (empty($c['installed'])) {
    http_response_code(503);
    echo "<!DOCTYPE html><title>Nextcloud</title><p>Nextcloud is not installed.</p>\n";
    exit;
}
$down = LabNextcloud\unavailable($c);
if ($down !== null) {
    http_response_code(503);
    echo "<!DOCTYPE html><title>Nextcloud</title><p>" . htmlspecialchars($down, ENT_QUOTES) . "</p>\n";
    exit;
}
$host = strtolower(preg_replace('/:\d+$/', '', $_SERVER['HTTP_HOST'] ?? ''));
if (!in_array($host, array_map('strtolower', $c['trusted_domains'] ?? array()), true)) {
    http_response_code(400);
    echo "<!DOCTYPE html><title>Nextcloud</title><p>Access through untrusted domain.</p>\n";
    exit;
}
try {
    $db = db($c);
    $name = app_value($db, $c, 'theming', 'name') ?? 'Nextcloud';
    $users = (int) $db->query('SELECT count(*) FROM ' . prefix($c) . 'users')->fetchColumn();
} catch (\Throwable $e) {
    http_response_code(503);
    echo "<!DOCTYPE html><title>Nextcloud</title><p>Internal Server Error: the database cannot be reached.</p>\n";
    error_log('lab nextcloud: ' . $e->getMessage());
    exit;
}
$name = htmlspecialchars($name, ENT_QUOTES);
$version = htmlspecialchars(LabNextcloud\version(), ENT_QUOTES);
echo "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Nextcloud – $name</title></head>\n";
echo "<body><h1>$name</h1><p>Lab stand-in of Nextcloud $version, $users account(s).</p></body></html>\n";
