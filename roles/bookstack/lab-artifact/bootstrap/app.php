<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): not BookStack. Configuration and
// database as Laravel gives them to BookStack.

namespace LabBookstack;

require_once __DIR__ . '/../vendor/autoload.php';

const BASE = __DIR__ . '/..';

function version(): string
{
    return trim(file_get_contents(BASE . '/VERSION'));
}

/** BASE/.env, read only for names the environment lacks (immutable). */
function dotenv(): array
{
    static $values = null;
    if ($values === null) {
        $values = [];
        foreach (@file(BASE . '/.env', FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) ?: [] as $line) {
            if (preg_match('/^\s*([A-Z][A-Z0-9_]*)=(.*)$/', $line, $m)) {
                $values[$m[1]] = trim($m[2], " \"");
            }
        }
    }
    return $values;
}

/** Laravel's env(): $_SERVER, $_ENV, getenv(), then BASE/.env. */
function env(string $key, ?string $default = null): ?string
{
    foreach ([$_SERVER[$key] ?? null, $_ENV[$key] ?? null, getenv($key) === false ? null : getenv($key)] as $v) {
        if (is_string($v)) {
            return $v;
        }
    }
    return dotenv()[$key] ?? $default;
}

/** Laravel 10's Application::storagePath(). */
function storage_path(string $path = ''): string
{
    $root = isset($_ENV['LARAVEL_STORAGE_PATH']) ? $_ENV['LARAVEL_STORAGE_PATH'] : BASE . '/storage';
    return $path === '' ? $root : $root . '/' . $path;
}

/** The encrypter's check: AES-256-CBC wants a 32-byte key. */
function app_key(): string
{
    $key = (string) env('APP_KEY', '');
    if (str_starts_with($key, 'base64:')) {
        $key = base64_decode(substr($key, 7));
    }
    if (strlen($key) !== 32) {
        throw new \RuntimeException('No application encryption key has been specified.');
    }
    return $key;
}

function db(): \PDO
{
    $host = env('DB_HOST', 'localhost');
    $dsn = sprintf('mysql:host=%s;port=%s;dbname=%s;charset=utf8mb4', $host, env('DB_PORT', '3306'), env('DB_DATABASE', 'forge'));
    return new \PDO($dsn, env('DB_USERNAME', 'forge'), env('DB_PASSWORD', ''), [
        \PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION,
    ]);
}

function setting(\PDO $db, string $key): ?string
{
    $q = $db->prepare('SELECT value FROM settings WHERE setting_key = ?');
    $q->execute([$key]);
    $v = $q->fetchColumn();
    return $v === false ? null : (string) $v;
}
