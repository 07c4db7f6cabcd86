<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): not Paheko. A page naming the
// organisation, read from the instance's database, so that a request
// proves the whole chain: nginx vhost, php-fpm pool, the tenant's
// config.local.php, its SQLite file.

namespace Paheko;

require __DIR__ . '/../include/init.php';

header('Content-Type: text/html; charset=utf-8');
if (!file_exists(DB_FILE) || !filesize(DB_FILE)) {
    if (DISABLE_INSTALL_FORM) {
        http_response_code(503);
        echo "<!DOCTYPE html><title>Paheko</title><p>Paheko n'est pas installé.</p>\n";
        exit;
    }
    header('Location: ' . WWW_URI . 'admin/install.php');
    exit;
}
try {
    $db = db(\SQLITE3_OPEN_READONLY);
    $name = config_get($db, 'org_name') ?? 'Paheko';
    $members = (int) $db->querySingle('SELECT count(*) FROM users');
} catch (\Throwable $e) {
    http_response_code(500);
    error_log('lab paheko: ' . $e->getMessage());
    echo "<!DOCTYPE html><title>Paheko</title><p>Erreur interne</p>\n";
    exit;
}
$name = htmlspecialchars($name, ENT_QUOTES);
$url = htmlspecialchars(defined('Paheko\WWW_URL') ? WWW_URL : '', ENT_QUOTES);
$version = htmlspecialchars(paheko_version(), ENT_QUOTES);
echo "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>$name</title></head>\n";
echo "<body><h1>$name</h1><p>Lab stand-in of Paheko $version at $url, $members member(s).</p></body></html>\n";
