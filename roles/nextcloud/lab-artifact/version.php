<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): upstream's version.php, same variables.
$OC_Version = array(29, 0, 4, 1);
$OC_VersionString = '29.0.4-lab';
$OC_Edition = '';
$OC_Channel = 'stable';
$vendor = 'nextcloud';
