<?php
// LAB ARTIFACT (see LAB-ARTIFACT.md): not composer's autoloader. It is
// here so that the role's `composer install` (production only) is skipped.
