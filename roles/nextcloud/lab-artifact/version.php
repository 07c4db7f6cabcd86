<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): upstream's version.php, same variables.
// The stand-in reads its version from VERSION (the lab packs the tree twice,
// as two releases); this file is upstream's layout only.
$OC_Version = array(33, 0, 9, 1);
$OC_VersionString = '33.0.9-lab';
$OC_Edition = '';
$OC_Channel = 'stable';
$vendor = 'nextcloud';
