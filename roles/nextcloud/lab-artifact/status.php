<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): upstream's status.php answer.
require_once __DIR__ . '/lib/base.php';
header('Content-Type: application/json');
$c = LabNextcloud\config();
echo json_encode(array(
    'installed' => !empty($c['installed']),
    'maintenance' => false,
    'needsDbUpgrade' => false,
    'version' => '33.0.9.1',
    'versionstring' => LabNextcloud\version(),
    'edition' => '',
    'productname' => 'Nextcloud (lab stand-in)',
    'extendedSupport' => false,
)), "\n";
