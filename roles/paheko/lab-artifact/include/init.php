<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): not Paheko. Its configuration,
// loaded as upstream's include/init.php does, and its SQLite database.

namespace Paheko;

const CONFIG_FILE = 'config.local.php';

if (!defined('\SQLITE3_OPEN_READWRITE')) {
    echo 'Le module de base de données SQLite3 n\'est pas disponible.' . PHP_EOL;
    exit(1);
}

if (file_exists(__DIR__ . '/../' . CONFIG_FILE)) {
    require __DIR__ . '/../' . CONFIG_FILE;
}

if (!defined('Paheko\ROOT')) {
    define('Paheko\ROOT', dirname(__DIR__));
}
if (!defined('Paheko\DATA_ROOT')) {
    define('Paheko\DATA_ROOT', ROOT . '/data');
}
foreach ([
    'CACHE_ROOT' => DATA_ROOT . '/cache',
    'DB_FILE' => DATA_ROOT . '/association.sqlite',
    'PLUGINS_ROOT' => DATA_ROOT . '/plugins',
    'WWW_URI' => '/',
    'SHOW_ERRORS' => true,
    'DISABLE_INSTALL_FORM' => false,
] as $const => $value) {
    if (!defined('Paheko\\' . $const)) {
        define('Paheko\\' . $const, $value);
    }
}

if (!defined('Paheko\SECRET_KEY')) {
    // Upstream writes a random key into ROOT/config.local.php: the shared,
    // read-only code tree must never need that.
    throw new \RuntimeException('Impossible de créer le fichier de configuration "' . CONFIG_FILE . '". Le répertoire "' . ROOT . '" n\'est pas accessible en écriture.');
}

function paheko_version(): string
{
    return trim(file_get_contents(ROOT . '/VERSION'));
}

function db(int $flags = \SQLITE3_OPEN_READWRITE): \SQLite3
{
    $db = new \SQLite3(DB_FILE, $flags);
    $db->enableExceptions(true);
    $db->busyTimeout(5000);
    return $db;
}

function config_get(\SQLite3 $db, string $key): ?string
{
    $q = $db->prepare('SELECT value FROM config WHERE key = :k');
    $q->bindValue(':k', $key);
    $row = $q->execute()->fetchArray(\SQLITE3_NUM);
    return $row === false ? null : (string) $row[0];
}

function config_set(\SQLite3 $db, string $key, string $value): void
{
    $q = $db->prepare('INSERT OR REPLACE INTO config (key, value) VALUES (:k, :v)');
    $q->bindValue(':k', $key);
    $q->bindValue(':v', $value);
    $q->execute();
}
