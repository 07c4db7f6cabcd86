<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): the admin pages, reduced to the home page.
require __DIR__ . '/../index.php';
