<?php
// Managed by clou (role paheko): this code tree is shared by every
// instance of the host. Each has its own constants in
// /var/lib/paheko/NAME/config.local.php, named by PAHEKO_TENANT_DIR
// (nginx's FastCGI parameter, or the CLI's environment).

namespace Paheko;

$paheko_tenant_dir = $_SERVER['PAHEKO_TENANT_DIR'] ?? getenv('PAHEKO_TENANT_DIR');

if (!is_string($paheko_tenant_dir) || $paheko_tenant_dir === ''
    || !is_readable($paheko_tenant_dir . '/config.local.php')) {
    if (PHP_SAPI !== 'cli') {
        http_response_code(503);
    }
    error_log('paheko: no tenant configuration (PAHEKO_TENANT_DIR)');
    echo "This instance's configuration cannot be read.\n";
    exit(1);
}

require $paheko_tenant_dir . '/config.local.php';
unset($paheko_tenant_dir);
