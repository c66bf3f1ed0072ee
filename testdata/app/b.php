<?php $parts[] = 'b@__RELEASE__';
