<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): upstream's router for the public
// site; the stand-in serves its one page for every path.
require __DIR__ . '/index.php';
