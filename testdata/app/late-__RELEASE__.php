<?php $parts[] = 'late@__RELEASE__';
