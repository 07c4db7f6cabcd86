<?php
// Managed by clou (role bookstack): a wiki's own config on BookStack's
// shared code tree. PHP runs this file first (auto_prepend_file), for
// php-fpm requests (nginx names the tenant's directory in the FastCGI
// parameter BOOKSTACK_TENANT_DIR) and for bookstack-artisan (environment).
// It loads DIR/.env into the environment, where Laravel looks first: its
// dotenv repository is immutable, so these values win over any BASE/.env,
// and LARAVEL_STORAGE_PATH moves storage_path() to the tenant's own.
(static function () {
    $dir = $_SERVER['BOOKSTACK_TENANT_DIR'] ?? getenv('BOOKSTACK_TENANT_DIR');
    if (!is_string($dir) || $dir === '') {
        return; // not a tenant's process: upstream's defaults
    }
    $lines = @file($dir . '/.env', FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES);
    if ($lines === false) {
        if (PHP_SAPI !== 'cli') {
            http_response_code(503);
        }
        error_log("bookstack: cannot read $dir/.env");
        echo "This wiki's configuration cannot be read.\n";
        exit(1);
    }
    foreach ($lines as $line) {
        $line = trim($line);
        if ($line === '' || $line[0] === '#' || !preg_match('/^([A-Z][A-Z0-9_]*)=(.*)$/', $line, $m)) {
            continue;
        }
        $value = $m[2];
        if (strlen($value) >= 2 && $value[0] === '"' && substr($value, -1) === '"') {
            $value = stripcslashes(substr($value, 1, -1));
        }
        $_ENV[$m[1]] = $value;
        $_SERVER[$m[1]] = $value;
        putenv($m[1] . '=' . $value);
    }
})();
