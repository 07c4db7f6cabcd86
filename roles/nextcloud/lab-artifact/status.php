<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): upstream's status.php answer.
require_once __DIR__ . '/lib/base.php';
LabNextcloud\fail_if_broken();
header('Content-Type: application/json');
$c = LabNextcloud\config();
$down = LabNextcloud\unavailable($c);
if ($down !== null) {
    http_response_code(503);
}
echo json_encode(array(
    'installed' => !empty($c['installed']),
    'maintenance' => !empty($c['maintenance']),
    'needsDbUpgrade' => !empty($c['installed']) && ($c['version'] ?? '') !== LabNextcloud\version(),
    'version' => $c['version'] ?? '',
    'versionstring' => LabNextcloud\version(),
    'edition' => '',
    'productname' => 'Nextcloud (lab stand-in)',
    'extendedSupport' => false,
)), "\n";
