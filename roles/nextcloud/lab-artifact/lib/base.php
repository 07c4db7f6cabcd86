<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): not Nextcloud. What upstream's
// lib/base.php and lib/private/Config.php do that the lab relies on.

namespace LabNextcloud;

const SERVERROOT = __DIR__ . '/..';

/** The config directory: NEXTCLOUD_CONFIG_DIR, else config/ of the code. */
function config_dir(): string
{
    $dir = getenv('NEXTCLOUD_CONFIG_DIR');
    return $dir ? rtrim($dir, '/') . '/' : SERVERROOT . '/config/';
}

/** config.php, then every *.config.php over it (sorted), as upstream. */
function config(): array
{
    $dir = config_dir();
    $files = array($dir . 'config.php');
    $extra = glob($dir . '*.config.php') ?: array();
    sort($extra);
    $merged = array();
    foreach (array_merge($files, $extra) as $file) {
        if (!is_file($file)) {
            continue;
        }
        $CONFIG = array();
        include $file;
        $merged = array_merge($merged, $CONFIG);
    }
    return $merged;
}

/** Writes config.php only (the other files are the admin's). */
function write_config(array $values): void
{
    $path = config_dir() . 'config.php';
    $text = "<?php\n\$CONFIG = " . var_export($values, true) . ";\n";
    if (file_put_contents($path . '.tmp', $text) === false || !rename($path . '.tmp', $path)) {
        fail("cannot write $path");
    }
    chmod($path, 0640);
}

function own_config(): array
{
    $path = config_dir() . 'config.php';
    if (!is_file($path)) {
        return array();
    }
    $CONFIG = array();
    include $path;
    return $CONFIG;
}

function fail(string $message, int $code = 1): void
{
    fwrite(STDERR, $message . "\n");
    exit($code);
}

/** A PDO connection with the config's credentials (pgsql or sqlite). */
function db(array $c): \PDO
{
    $type = $c['dbtype'] ?? 'sqlite';
    if ($type !== 'pgsql') {
        throw new \RuntimeException("the lab stand-in speaks pgsql only, not $type");
    }
    $host = $c['dbhost'] ?? 'localhost';
    $dsn = 'pgsql:host=' . $host . ';dbname=' . $c['dbname'];
    $pdo = new \PDO($dsn, $c['dbuser'], $c['dbpassword']);
    $pdo->setAttribute(\PDO::ATTR_ERRMODE, \PDO::ERRMODE_EXCEPTION);
    return $pdo;
}

function prefix(array $c): string
{
    return $c['dbtableprefix'] ?? 'oc_';
}

function app_value(\PDO $db, array $c, string $app, string $key): ?string
{
    $q = $db->prepare('SELECT configvalue FROM ' . prefix($c) . 'appconfig WHERE appid = ? AND configkey = ?');
    $q->execute(array($app, $key));
    $v = $q->fetchColumn();
    return $v === false ? null : $v;
}

function set_app_value(\PDO $db, array $c, string $app, string $key, string $value): void
{
    $q = $db->prepare('INSERT INTO ' . prefix($c) . 'appconfig (appid, configkey, configvalue) VALUES (?, ?, ?) '
        . 'ON CONFLICT (appid, configkey) DO UPDATE SET configvalue = EXCLUDED.configvalue');
    $q->execute(array($app, $key, $value));
}

/** The code's version: its VERSION (the lab packs one tree under two). */
function version(): string
{
    return trim((string) file_get_contents(SERVERROOT . '/VERSION'));
}

/**
 * A release that installs and migrates fine but whose pages fail (a PHP
 * fatal error in new code): the lab makes one with a file
 * `broken-VERSION` in the tenant's config directory. Answers 500 and stops.
 */
function fail_if_broken(): void
{
    $marker = config_dir() . 'broken-' . version();
    if (is_file($marker)) {
        http_response_code(500);
        error_log("PHP Fatal error:  Uncaught Error: Call to undefined method OC\\Server::getLabService() (lab: $marker)");
        echo "Internal Server Error\n";
        exit;
    }
}

/**
 * What stops the instance from serving: maintenance mode, or code newer
 * than the database (upstream's "update needed" page until occ upgrade).
 */
function unavailable(array $c): ?string
{
    if (!empty($c['maintenance'])) {
        return 'This Nextcloud instance is currently in maintenance mode.';
    }
    if (!empty($c['installed']) && ($c['version'] ?? '') !== version()) {
        return 'Nextcloud will be updated to version ' . version() . ' (the database is at '
            . ($c['version'] ?? 'none') . ').';
    }
    return null;
}
