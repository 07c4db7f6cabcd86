<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): not BookStack. A page naming the
// wiki, read from its database, so that a request proves the whole chain:
// nginx vhost, php-fpm pool, the tenant's .env, its storage, MariaDB.

require __DIR__ . '/../bootstrap/app.php';

use function LabBookstack\{db, env, app_key, setting, storage_path, version};

header('Content-Type: text/html; charset=utf-8');
// Laravel's maintenance mode (`artisan down`).
if (is_file(storage_path('framework/down'))) {
    http_response_code(503);
    echo "<!DOCTYPE html><title>BookStack</title><p>Service Unavailable</p>\n";
    exit;
}
try {
    app_key();
    $db = db();
    $name = setting($db, 'app-name') ?? 'BookStack';
    $users = (int) $db->query('SELECT count(*) FROM users WHERE system_name IS NULL')->fetchColumn();
} catch (Throwable $e) {
    http_response_code(500);
    error_log('lab bookstack: ' . $e->getMessage());
    echo "<!DOCTYPE html><title>BookStack</title><p>An Error Occurred.</p>\n";
    exit;
}
// Laravel's file sessions: one file per visitor in the tenant's storage.
$sessions = storage_path('framework/sessions');
if (@file_put_contents($sessions . '/lab-' . bin2hex(random_bytes(8)), 'a:0:{}') === false) {
    http_response_code(500);
    echo "<!DOCTYPE html><title>BookStack</title><p>The stream or file \"$sessions\" could not be opened.</p>\n";
    exit;
}
$name = htmlspecialchars($name, ENT_QUOTES);
$url = htmlspecialchars((string) env('APP_URL', ''), ENT_QUOTES);
$version = htmlspecialchars(version(), ENT_QUOTES);
echo "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>$name</title></head>\n";
echo "<body><h1>$name</h1><p>Lab stand-in of BookStack $version at $url, $users account(s).</p></body></html>\n";
